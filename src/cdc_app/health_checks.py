"""The pipeline's health, dependency by dependency, with what to do about each problem.

Every configured database is checked on its own through its adapter's ``health()``
(the adapter's own pool: the TimescaleDB server used here wedges on a second
connection), each with a time limit, so one that hangs or is down is reported and
never stops the others from being checked. A destination that is down makes the
pipeline degraded, not down: the others keep flowing and it catches up later. The
pipeline is down only when nothing can flow: its source is down, or every destination.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import attrs

from cdc_app.components import Components
from cdc_app.progress import DestinationProgress
from cdc_domain.dead_letters import FailureReason
from cdc_domain.errors import describe_error
from cdc_domain.health import HealthStatus
from cdc_domain.ports import HealthChecked, StorageReporting

__all__ = ["Check", "Health", "check_health"]

_CHECK_TIMEOUT_SECONDS = 5.0

_SEVERITY = {HealthStatus.UP: 0, HealthStatus.DEGRADED: 1, HealthStatus.DOWN: 2}


@attrs.frozen
class Check:
    """One line of the report. ``kind`` is source, schemas, destination (its database),
    replication (how its batches go) or cdc_raw; ``details`` are numbers for machines."""

    name: str
    kind: str
    status: HealthStatus
    latency_ms: float | None = None
    message: str = ""
    details: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status.value,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "message": self.message,
            **self.details,
        }


@attrs.frozen
class Health:
    status: HealthStatus
    checks: tuple[Check, ...]

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "checks": [c.to_json() for c in self.checks]}


async def check_health(
    components: Components, progress: Mapping[str, DestinationProgress] | None = None
) -> Health:
    """Check everything concurrently. ``progress`` is the running pipeline's; without
    it (``cdc-app health`` with no pipeline running) replication is judged from the
    dead letter queue alone."""
    dependencies: list[tuple[str, str, object]] = [
        ("source", "source", components.source),
        ("schemas", "schemas", components.schemas),
        *((sink.name, "destination", sink) for sink in components.sinks),
    ]
    checked = [(name, kind, a) for name, kind, a in dependencies if isinstance(a, HealthChecked)]
    reports = await asyncio.gather(*(_check(name, kind, a) for name, kind, a in checked))
    replication = [
        await _replication(components, sink.name, (progress or {}).get(sink.name))
        for sink in components.sinks
    ]
    checks = [*reports, *replication]
    if isinstance(components.source, StorageReporting):
        checks.append(await _cdc_raw(components, components.source))
    return Health(_overall(checks), tuple(checks))


async def _check(name: str, kind: str, adapter: HealthChecked) -> Check:
    started = time.perf_counter()
    try:
        report = await asyncio.wait_for(adapter.health(), _CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        message = f"no answer within {_CHECK_TIMEOUT_SECONDS:g} s"
        return Check(name, kind, HealthStatus.DOWN, _since(started), message)
    except Exception as exc:
        message = f"health check failed: {describe_error(exc)}"
        return Check(name, kind, HealthStatus.DOWN, _since(started), message)
    latency = report.latency_ms if report.latency_ms is not None else _since(started)
    return Check(name, kind, report.status, latency, report.message)


async def _replication(
    components: Components, name: str, progress: DestinationProgress | None
) -> Check:
    problems: list[str] = []
    details: dict[str, Any] = {}
    halted = False
    if progress is not None:
        details["position"] = str(progress.position) if progress.position else None
        details["lag_seconds"] = progress.lag_seconds(components.clock.now())
        details["consecutive_failures"] = progress.consecutive_failures
        details["failure"] = progress.failure.value if progress.failure else None
        halted = progress.halted
        if halted:
            retry = progress.retry_in_seconds
            problems.append(
                f"stopped on a permanent error ({progress.last_error}); its position is kept "
                "and nothing is lost. Fix the cause, then restart the pipeline"
                + (f" (or it tries again in {retry:g} s)" if retry is not None else "")
            )
        elif progress.consecutive_failures:
            problems.append(
                f"its last {progress.consecutive_failures} batch(es) failed "
                f"({progress.last_error}); it retries from its committed offset (next try in "
                f"{progress.retry_in_seconds:g} s) and loses nothing meanwhile: "
                f"make {name} reachable again (see its own check) and it catches up"
            )
        problems.extend(table.advice for table in progress.blocked)
    incompatible = await components.dead_letters.list(
        destination=name, reason=FailureReason.SCHEMA_INCOMPATIBLE
    )
    if incompatible:
        tables = sorted({entry.table or "?" for entry in incompatible})
        details["schema_incompatible_pending"] = len(incompatible)
        problems.append(
            f"{len(incompatible)} event(s) of {', '.join(tables)} wait in the dead letter "
            f"queue as SCHEMA_INCOMPATIBLE: once {name} holds their columns, run "
            f"'cdc-app dlq replay --destination {name} --reason SCHEMA_INCOMPATIBLE'"
        )
    status = HealthStatus.DOWN if halted else HealthStatus.DEGRADED if problems else HealthStatus.UP
    return Check(name, "replication", status, None, "; ".join(problems), details)


async def _cdc_raw(components: Components, source: StorageReporting) -> Check:
    try:
        storage = await source.storage()
    except OSError as exc:
        where = exc.filename or "the source's storage"
        message = f"cannot measure {where}: {exc.strerror or exc}"
        return Check("cdc_raw", "cdc_raw", HealthStatus.DEGRADED, None, message)
    components.metrics.record_cdc_raw(storage)
    threshold = components.settings.health.cdc_raw_warn_ratio
    details = {
        "segments": storage.files,
        "used_bytes": storage.used_bytes,
        "total_bytes": storage.total_bytes,
        "ratio": round(storage.ratio, 4),
    }
    if storage.ratio <= threshold:
        return Check("cdc_raw", "cdc_raw", HealthStatus.UP, None, "", details)
    message = (
        f"{storage.location} is {storage.ratio:.0%} full (warning above {threshold:.0%}): when "
        "it reaches cdc_total_space Cassandra rejects writes to CDC tables. Bring lagging "
        "or failing destinations back (they hold segments there), or raise cdc_total_space"
    )
    return Check("cdc_raw", "cdc_raw", HealthStatus.DEGRADED, None, message, details)


def _overall(checks: list[Check]) -> HealthStatus:
    sources = [c for c in checks if c.kind == "source"]
    destinations = {c.name for c in checks if c.kind in ("destination", "replication")}
    down = {
        c.name
        for c in checks
        if c.kind in ("destination", "replication") and c.status is HealthStatus.DOWN
    }
    if any(c.status is HealthStatus.DOWN for c in sources) or (
        destinations and down == destinations
    ):
        return HealthStatus.DOWN
    worst = max((_SEVERITY[c.status] for c in checks), default=0)
    return HealthStatus.DEGRADED if worst else HealthStatus.UP


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
