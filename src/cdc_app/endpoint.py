"""The HTTP endpoint of a running pipeline: health, status and Prometheus metrics.

``/health/live``   200 while the process serves requests at all.
``/health/ready``  200 while it runs and is not down nor stopping, else 503.
``/health``        every check (see :mod:`cdc_app.health_checks`); 200 when up or
                   degraded (it still delivers), 503 when down.
``/status``        each destination's offset, lag, events and pending dead letters.
``/metrics``       Prometheus text format.
``POST /dlq/replay`` re-drive pending dead letters through this pipeline's own sinks
                   (``destination`` and ``reason`` query parameters filter them).
``/snapshot``      the running (or latest) snapshot's progress.
``POST /snapshot`` plan (``dry_run``) or start a snapshot in this pipeline: a JSON
                   ``{"request": SnapshotRequest, "dry_run": bool}``; 409 while one runs.

``cdc-app health``, ``status`` and ``dlq replay`` ask this endpoint first, so working
with a running pipeline opens no second connection to any database. The endpoint
listens on loopback unless configured otherwise: anyone who can reach it can replay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from cdc_app.components import Components
from cdc_app.health_checks import check_health
from cdc_app.snapshots import SnapshotRequest, plan_json
from cdc_app.status import agent_positions, destination_statuses, unknown_tables
from cdc_domain.dead_letters import FailureReason
from cdc_domain.health import HealthStatus
from cdc_domain.ports import StorageReporting

__all__ = ["health_app", "serving"]

_COMPONENTS = web.AppKey("components", Components)
_STOP = web.AppKey("stop", asyncio.Event)


def health_app(components: Components, stop: asyncio.Event) -> web.Application:
    app = web.Application()
    app[_COMPONENTS] = components
    app[_STOP] = stop
    app.router.add_get("/health/live", _live)
    app.router.add_get("/health/ready", _ready)
    app.router.add_get("/health", _health)
    app.router.add_get("/status", _status)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/dlq/replay", _replay)
    app.router.add_get("/snapshot", _snapshot)
    app.router.add_post("/snapshot", _start_snapshot)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` until the block ends; yields its base URL (with the real port
    when ``port`` is 0)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        yield f"http://{_url_host(bound[0])}:{bound[1]}"
    finally:
        await runner.cleanup()


async def _live(_: web.Request) -> web.Response:
    return web.json_response({"status": HealthStatus.UP.value})


async def _ready(request: web.Request) -> web.Response:
    if request.app[_STOP].is_set():
        return web.json_response({"ready": False, "status": "stopping"}, status=503)
    components = request.app[_COMPONENTS]
    health = await check_health(components, components.progress)
    ready = health.status is not HealthStatus.DOWN
    body = {"ready": ready, "status": health.status.value}
    return web.json_response(body, status=200 if ready else 503)


async def _health(request: web.Request) -> web.Response:
    components = request.app[_COMPONENTS]
    health = await check_health(components, components.progress)
    status = 503 if health.status is HealthStatus.DOWN else 200
    return web.json_response(health.to_json(), status=status)


async def _status(request: web.Request) -> web.Response:
    components = request.app[_COMPONENTS]
    statuses = await destination_statuses(
        names=[sink.name for sink in components.sinks],
        partition_id=components.source.partition_id,
        offsets={d.name: d.offsets for d in components.destinations},
        dead_letters=components.dead_letters,
        clock=components.clock,
        progress=components.progress,
    )
    tallies = await unknown_tables(components.dead_letters)
    agents = await agent_positions({d.name: d.offsets for d in components.destinations})
    return web.json_response(
        {
            "destinations": [s.to_json() for s in statuses],
            "agents": agents,
            "unknown_tables": tallies,
            "snapshot": components.snapshots.status(),
            "snapshots": await components.snapshots.recorded(),
        }
    )


async def _snapshot(request: web.Request) -> web.Response:
    return web.json_response({"snapshot": request.app[_COMPONENTS].snapshots.status()})


async def _start_snapshot(request: web.Request) -> web.Response:
    jobs = request.app[_COMPONENTS].snapshots
    try:
        body = await request.json()
        asked = SnapshotRequest.from_json(body.get("request") or {})
        dry_run = bool(body.get("dry_run", False))
    except (ValueError, TypeError, AttributeError) as exc:
        return web.json_response({"error": f"a bad snapshot request: {exc}"}, status=400)
    if jobs.busy and not dry_run:
        answer = {"error": "a snapshot is already running in this pipeline", "busy": True}
        return web.json_response(answer, status=409)
    try:
        plan = await jobs.plan(asked)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    started = not dry_run and bool(plan.tables)
    if started:
        await jobs.start(plan, request.app[_STOP])
    return web.json_response({"plan": plan_json(plan), "started": started})


async def _replay(request: web.Request) -> web.Response:
    components = request.app[_COMPONENTS]
    reason = request.query.get("reason")
    try:
        wanted = FailureReason(reason) if reason else None
    except ValueError:
        return web.json_response({"error": f"unknown reason {reason!r}"}, status=400)
    report = await components.replicate.replay(
        destination=request.query.get("destination"), reason=wanted
    )
    return web.json_response(report.to_json())


async def _metrics(request: web.Request) -> web.Response:
    components = request.app[_COMPONENTS]
    _refresh_lag(components)
    source = components.source
    if isinstance(source, StorageReporting):
        with contextlib.suppress(OSError):  # /health says why it cannot be measured
            components.metrics.record_cdc_raw(await source.storage())
    body = components.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _refresh_lag(components: Components) -> None:
    now = components.clock.now()
    for name, progress in components.progress.items():
        lag = progress.lag_seconds(now)
        if lag is not None:
            components.metrics.lag_seconds.labels(name).set(lag)


def _url_host(host: Any) -> str:
    text = str(host)
    return f"[{text}]" if ":" in text else text
