"""``cdc-app snapshot``: the rows tables already hold, into the destinations.

A running pipeline is asked to do it (``POST /snapshot``) and its progress is followed
(``GET /snapshot``): its sinks are the ones the stream writes through, one writer at a
time. Only when no pipeline answers does the command open the adapters and run the
snapshot itself. Either way the snapshot resumes an unfinished run (``--restart``
starts over), records its progress per range, and prints its plan first (``--dry-run``
prints only that).

Exit codes: 0 every range read into every destination (or the plan printed), 1 some
ranges failed (they are in the dead letter queue with their bounds), the snapshot was
stopped, or another one is running; 2 the tables, destinations or token range asked for
are wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import IO, Any

from cdc_app.container import Container, running
from cdc_app.running_pipeline import ask_running_pipeline
from cdc_app.settings import Settings
from cdc_app.snapshot_display import SnapshotDisplay, render_plan, render_summary
from cdc_app.snapshots import SnapshotJobs, SnapshotRequest, plan_json

__all__ = ["snapshot"]

_POLL_SECONDS = 0.5
_ASK_TIMEOUT_S = 120.0


async def snapshot(
    settings: Settings,
    container: Container,
    out: IO[str],
    err: IO[str],
    request: SnapshotRequest,
    *,
    dry_run: bool,
) -> int:
    answer = await ask_running_pipeline(
        settings.health,
        "/snapshot",
        method="POST",
        body={"request": request.to_json(), "dry_run": dry_run},
        timeout_s=_ASK_TIMEOUT_S,
    )
    if answer is not None:
        return await _through_pipeline(settings, answer, out, err, dry_run=dry_run)
    async with running(container) as components:
        return await _here(components.snapshots, request, out, err, dry_run=dry_run)


async def _through_pipeline(
    settings: Settings, answer: dict[str, Any], out: IO[str], err: IO[str], *, dry_run: bool
) -> int:
    if "error" in answer:
        err.write(f"{answer['error']}\n")
        return 1 if answer.get("busy") else 2
    out.write(render_plan(answer["plan"]))
    if dry_run or not answer["plan"]["tables"]:
        return 0
    out.write("running in the pipeline; Ctrl-C stops watching, not the snapshot\n")
    name = answer["plan"]["name"]
    status: dict[str, Any] | None = None
    with SnapshotDisplay(err, interval_s=settings.snapshot.progress_interval_s) as display:
        while True:
            current = await ask_running_pipeline(settings.health, "/snapshot")
            found = None if current is None else current.get("snapshot")
            if found is None or found["name"] != name:
                err.write("the pipeline stopped answering; 'cdc-app status' shows the progress\n")
                return 1
            status = found
            display.update(status)
            if status["state"] != "running":
                break
            await asyncio.sleep(_POLL_SECONDS)
    out.write(render_summary(status))
    return 0 if status["state"] == "finished" else 1


async def _here(
    jobs: SnapshotJobs, request: SnapshotRequest, out: IO[str], err: IO[str], *, dry_run: bool
) -> int:
    try:
        plan = await jobs.plan(request)
    except ValueError as exc:
        err.write(f"{exc}\n")
        return 2
    out.write(render_plan(plan_json(plan)))
    if dry_run or not plan.tables:
        return 0
    stop = asyncio.Event()
    async with _stopping_on_signals(stop):
        await jobs.start(plan, stop)
        with SnapshotDisplay(err) as display:
            waiting = asyncio.ensure_future(jobs.wait())
            while not waiting.done():
                status = jobs.status()
                if status is not None:
                    display.update(status)
                await asyncio.wait([waiting], timeout=_POLL_SECONDS)
            report = waiting.result()
            final = jobs.status()
            assert final is not None
            display.update(final)
    out.write(render_summary(final))
    return 0 if report is not None and report.ok else 1


@contextlib.asynccontextmanager
async def _stopping_on_signals(stop: asyncio.Event) -> AsyncIterator[None]:
    """SIGINT and SIGTERM stop the snapshot after the pages in flight; what it finished
    is recorded, and the next run resumes from there."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
