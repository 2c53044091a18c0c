"""Snapshots in a running agent: the automatic ones ``source.snapshot`` asks for, those
``cdc-app snapshot`` requests, and what each has done so far.

One snapshot runs at a time, in the agent's own process, through the sinks the stream
uses (each written by one task at a time: :class:`~cdc_domain.delivery.ExclusiveSink`).
``cdc-app snapshot`` therefore asks a running pipeline to run it (``POST /snapshot``)
and only runs one itself when no pipeline answers: a second process writing the same
destinations would race the pipeline's own view of them (ClickHouse's row cache).

Progress (:class:`SnapshotTracker`) is what ``/snapshot``, ``/status``, ``/metrics``,
the log and the terminal show: per table, rows read, rows/s, the ranges done and an
ETA from the share of the token space read (or from the node's estimate before the
first range is done).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs
import structlog

from cdc_app.metrics import Metrics
from cdc_app.settings import CassandraSource, Settings, SnapshotMode
from cdc_domain.errors import describe_error
from cdc_domain.ports import SchemaSource
from cdc_domain.schema import TableSchema
from cdc_domain.snapshot import (
    PlannedTable,
    Selection,
    Snapshot,
    SnapshotPlan,
    SnapshotReport,
    SnapshotTuning,
)
from cdc_domain.snapshot_progress import TableProgress
from cdc_domain.tokens import TokenRange

__all__ = [
    "SnapshotBusyError",
    "SnapshotJobs",
    "SnapshotRequest",
    "SnapshotTracker",
    "plan_json",
    "progress_json",
    "tuning",
]

Logger = structlog.typing.FilteringBoundLogger


def tuning(settings: Settings) -> SnapshotTuning:
    snapshot = settings.snapshot
    return SnapshotTuning(
        concurrency=snapshot.concurrency,
        range_partitions=snapshot.range_partitions,
        min_ranges=snapshot.min_ranges,
        range_attempts=snapshot.range_attempts,
        retry_initial_s=snapshot.retry_initial_ms / 1000,
        retry_max_s=snapshot.retry_max_ms / 1000,
    )


class SnapshotBusyError(RuntimeError):
    """A snapshot is already running in this agent."""


@attrs.frozen
class SnapshotRequest:
    """What ``cdc-app snapshot`` asks for: tables (``ks.table`` or ``ks.*``; none: every
    captured table), destinations (none: all), a token range to re-read only, every
    range of the ring instead of the node's own, a fresh run instead of resuming."""

    tables: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    token_range: TokenRange | None = None
    all_ranges: bool = False
    restart: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": list(self.tables),
            "destinations": list(self.destinations),
            "token_range": None if self.token_range is None else str(self.token_range),
            "all_ranges": self.all_ranges,
            "restart": self.restart,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotRequest:
        """Raises ValueError (or TokenRangeError) naming what is wrong."""
        unknown = set(data) - {"tables", "destinations", "token_range", "all_ranges", "restart"}
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
        token_range = data.get("token_range")
        return cls(
            tables=tuple(str(t) for t in data.get("tables") or ()),
            destinations=tuple(str(d) for d in data.get("destinations") or ()),
            token_range=None if not token_range else TokenRange.parse(str(token_range)),
            all_ranges=bool(data.get("all_ranges", False)),
            restart=bool(data.get("restart", False)),
        )


@attrs.define
class _Table:
    planned: PlannedTable
    started: float
    rows: int = 0
    done: set[TokenRange] = attrs.field(factory=set)
    failed: dict[str, int] = attrs.field(factory=dict)
    written: dict[str, int] = attrs.field(factory=dict)
    finished: set[str] = attrs.field(factory=set)
    ended: float | None = None

    @property
    def to_read(self) -> tuple[TokenRange, ...]:
        return self.planned.to_read

    def fraction(self) -> float:
        total = sum(r.width for r in self.to_read)
        return sum(r.width for r in self.done) / total if total else 1.0

    def rate(self, now: float) -> float:
        elapsed = (self.ended or now) - self.started
        return self.rows / elapsed if elapsed > 0 else 0.0

    def expected_rows(self) -> int | None:
        """Rows this run will read: projected from the share of the token space read
        once a range is done, the node's estimate before."""
        fraction = self.fraction()
        if fraction >= 1.0:
            return self.rows
        if self.done:
            return max(self.rows, round(self.rows / fraction))
        return self.planned.estimated_rows

    def eta_s(self, now: float) -> float | None:
        if self.ended is not None:
            return 0.0
        fraction = self.fraction()
        elapsed = now - self.started
        if self.done and 0 < fraction < 1:
            return elapsed * (1 - fraction) / fraction
        expected, rate = self.expected_rows(), self.rate(now)
        if expected is not None and rate > 0:
            return max(0.0, (expected - self.rows) / rate)
        return None


class SnapshotTracker:
    """Follows one snapshot (the domain's :class:`~cdc_domain.snapshot.SnapshotObserver`)
    for the endpoint, the metrics, the log and the terminal."""

    def __init__(
        self, plan: SnapshotPlan, metrics: Metrics | None = None, log: Logger | None = None
    ) -> None:
        self.plan = plan
        self._metrics = metrics
        self._log = log
        now = time.monotonic()
        self._tables = {t.name: _Table(t, now) for t in plan.tables}
        self.state = "running"
        self.error: str | None = None
        if metrics is not None:
            metrics.snapshot_running.set(1)
            for table in plan.tables:
                metrics.snapshot_ranges.labels(table.name, "planned").set(len(table.to_read))
                metrics.snapshot_ranges.labels(table.name, "done").set(0)
                metrics.snapshot_ranges.labels(table.name, "failed").set(0)
                estimate = table.estimated_rows
                if estimate is not None:
                    metrics.snapshot_rows_estimated.labels(table.name).set(estimate)

    def range_started(self, table: str, token_range: TokenRange) -> None:
        if self._log is not None:
            self._log.info("snapshot range read", table=table, token_range=str(token_range))

    def rows_read(self, table: str, rows: int) -> None:
        self._tables[table].rows += rows
        if self._metrics is not None:
            self._metrics.snapshot_rows.labels(table).inc(rows)

    def written(self, table: str, destination: str, events: int) -> None:
        found = self._tables[table].written
        found[destination] = found.get(destination, 0) + events
        if self._metrics is not None:
            self._metrics.snapshot_events.labels(table, destination).inc(events)

    def range_finished(
        self, table: str, token_range: TokenRange, destinations: Sequence[str]
    ) -> None:
        tracked = self._tables[table]
        tracked.done.add(token_range)
        if self._metrics is not None:
            self._metrics.snapshot_ranges.labels(table, "done").set(len(tracked.done))

    def range_failed(
        self, table: str, token_range: TokenRange, destination: str, error: str
    ) -> None:
        tracked = self._tables[table]
        tracked.failed[destination] = tracked.failed.get(destination, 0) + 1
        if self._metrics is not None:
            failed = max(tracked.failed.values())
            self._metrics.snapshot_ranges.labels(table, "failed").set(failed)

    def table_finished(self, table: str, destination: str) -> None:
        tracked = self._tables[table]
        tracked.finished.add(destination)
        if tracked.finished >= set(tracked.planned.needed):
            tracked.ended = time.monotonic()

    def ended(self, report: SnapshotReport | None, error: str | None = None) -> None:
        now = time.monotonic()
        for tracked in self._tables.values():
            tracked.ended = tracked.ended or now
        if error is not None:
            self.state, self.error = "error", error
        elif report is None or report.stopped:
            self.state = "stopped"
        else:
            self.state = "finished" if report.ok else "failed"
        if self._metrics is not None:
            self._metrics.snapshot_running.set(0)

    def to_json(self) -> dict[str, Any]:
        now = time.monotonic()
        tables = []
        for name, tracked in self._tables.items():
            eta = tracked.eta_s(now)
            tables.append(
                {
                    "table": name,
                    "rows": tracked.rows,
                    "expected_rows": tracked.expected_rows(),
                    "estimated_rows": tracked.planned.estimated_rows,
                    "rows_per_s": round(tracked.rate(now), 1),
                    "eta_s": None if eta is None else round(eta, 1),
                    "fraction": round(tracked.fraction(), 4),
                    "ranges": {
                        "planned": len(tracked.planned.ranges),
                        "to_read": len(tracked.to_read),
                        "done": len(tracked.done),
                        "failed": max(tracked.failed.values(), default=0),
                    },
                    "destinations": {
                        d: {
                            "written": tracked.written.get(d, 0),
                            "failed_ranges": tracked.failed.get(d, 0),
                            "finished": d in tracked.finished,
                        }
                        for d in tracked.planned.needed
                    },
                }
            )
        return {
            "name": self.plan.name,
            "state": self.state,
            "error": self.error,
            "tables": tables,
            "skipped": [{"table": t, "why": why} for t, why in self.plan.skipped],
        }


def plan_json(plan: SnapshotPlan) -> dict[str, Any]:
    """What ``--dry-run`` prints: per table, its ranges, the rows the node estimates in
    those still to read, and per destination its run and what it still needs."""
    return {
        "name": plan.name,
        "tables": [
            {
                "table": t.name,
                "ranges": len(t.ranges),
                "to_read": len(t.to_read),
                "estimated_rows": t.estimated_rows,
                "recorded": t.recorded,
                "destinations": {
                    d: {
                        "run": t.runs[d],
                        "resumed": d not in t.new_runs and t.recorded,
                        "to_read": len(t.needed[d]),
                    }
                    for d in t.needed
                },
            }
            for t in plan.tables
        ],
        "skipped": [{"table": t, "why": why} for t, why in plan.skipped],
    }


def progress_json(found: Sequence[TableProgress]) -> list[dict[str, Any]]:
    """Recorded progress, for ``cdc-app status`` when no pipeline answers."""
    return [
        {
            "table": p.table,
            "destination": p.destination,
            "run": p.run,
            "state": "finished" if p.finished else "unfinished",
            "ranges_done": len(p.ranges),
            "ranges": p.planned,
            "rows": p.rows,
        }
        for p in sorted(found, key=lambda p: (p.table, p.destination))
        if p.run is not None
    ]


class SnapshotJobs:
    """Runs the agent's snapshots, one at a time, and keeps the latest one's progress."""

    def __init__(
        self,
        *,
        snapshot: Snapshot,
        schemas: SchemaSource,
        settings: Settings,
        metrics: Metrics,
        log: Logger | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._schemas = schemas
        self._settings = settings
        self._metrics = metrics
        self._log = log or structlog.get_logger("cdc_app.snapshot")
        self._tracker: SnapshotTracker | None = None
        self._task: asyncio.Task[SnapshotReport | None] | None = None
        self._background: list[asyncio.Task[None]] = []

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any] | None:
        """The running (or latest) snapshot's progress; None before any."""
        return None if self._tracker is None else self._tracker.to_json()

    async def recorded(self) -> list[dict[str, Any]]:
        return progress_json(await self._snapshot.progress())

    async def tables(self, patterns: Sequence[str] = ()) -> list[TableSchema]:
        """The captured tables (``cdc = true``, in ``source.tables``) that match
        ``patterns`` (all when none). A pattern matching no captured table is an error:
        a table the stream does not follow would be a stale copy once snapshotted."""
        captured = [
            schema
            for (keyspace, table), schema in sorted((await self._schemas.tables()).items())
            if schema.cdc and _matches(self._source_tables(), f"{keyspace}.{table}")
        ]
        if not patterns:
            return captured
        unmatched = [
            p for p in patterns if not any(_matches([p], s.qualified_name) for s in captured)
        ]
        if unmatched:
            raise ValueError(
                f"no captured table matches {', '.join(unmatched)} (a table is captured when "
                "it has cdc = true and source.tables names it)"
            )
        return [s for s in captured if _matches(patterns, s.qualified_name)]

    async def plan(self, request: SnapshotRequest) -> SnapshotPlan:
        tables = await self.tables(request.tables)
        return await self._snapshot.plan(
            tables,
            selection=Selection.RESTART if request.restart else Selection.RESUME,
            destinations=request.destinations or None,
            all_ranges=request.all_ranges or self._settings.snapshot.all_ranges,
            within=request.token_range,
        )

    async def start(self, plan: SnapshotPlan, stop: asyncio.Event) -> None:
        """Record the plan's new runs and run it in the background."""
        if self.busy:
            raise SnapshotBusyError("a snapshot is already running in this agent")
        await self._snapshot.begin(plan)
        self._run_in_background(plan, stop)

    async def wait(self) -> SnapshotReport | None:
        """The background snapshot's report (None if it stopped on an error)."""
        return None if self._task is None else await self._task

    def automatic(self, mode: SnapshotMode, stop: asyncio.Event) -> dict[str, asyncio.Event]:
        """Start what ``source.snapshot`` asks for; per destination, an event set once
        its snapshot is planned and recorded: its stream must wait for it, so which
        destinations have not streamed yet is decided before they do. A destination
        whose progress cannot be read yet (its database down) is tried again, pausing
        ``retry_initial_ms`` doubling to ``retry_max_ms``, and held alone meanwhile."""
        holds = {name: asyncio.Event() for name in self._snapshot.destinations}
        if mode is SnapshotMode.NEVER:
            for hold in holds.values():
                hold.set()
            return holds
        selection = Selection.INITIAL if mode is SnapshotMode.INITIAL else Selection.WHEN_NEEDED
        task = asyncio.create_task(self._decide(selection, holds, stop), name="snapshot plan")
        self._background.append(task)
        if mode is SnapshotMode.WHEN_NEEDED:
            watcher = asyncio.create_task(self._when_needed(stop), name="snapshot check")
            self._background.append(watcher)
        return holds

    async def aclose(self) -> None:
        """Stop planning and checking; a running snapshot ends by its own stop event."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()

    async def _decide(
        self, selection: Selection, holds: dict[str, asyncio.Event], stop: asyncio.Event
    ) -> None:
        pending = list(holds)
        pause = self._settings.pipeline.retry_initial_ms / 1000
        while pending and not stop.is_set():
            plan, decided = await self._plan_each(selection, pending)
            if plan is not None:
                await self.wait()  # one snapshot at a time
                if not plan.empty and not stop.is_set():
                    self._report_plan(plan)
                    self._run_in_background(plan, stop)
            for name in decided:
                holds[name].set()
            pending = [n for n in pending if n not in decided]
            if pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, self._settings.pipeline.retry_max_ms / 1000)

    async def _when_needed(self, stop: asyncio.Event) -> None:
        """Every ``check_interval_s`` while no snapshot runs: snapshot each captured
        (table, destination) without a finished snapshot (a table that gained
        ``cdc = true``, ranges that failed before)."""
        names = list(self._snapshot.destinations)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.snapshot.check_interval_s)
            if stop.is_set() or self.busy:
                continue
            plan, _ = await self._plan_each(Selection.WHEN_NEEDED, names)
            if plan is not None and not plan.empty and not self.busy:
                self._report_plan(plan)
                self._run_in_background(plan, stop)

    async def _plan_each(
        self, selection: Selection, names: Sequence[str]
    ) -> tuple[SnapshotPlan | None, list[str]]:
        """Plan and record each destination alone, so one whose database is down holds
        back no other; then the plan of those that could be, as one snapshot reading
        each range once for them all (their new runs recorded, so it resumes them)."""
        decided = []
        for name in names:
            try:
                await self._snapshot.begin(await self._automatic_plan(selection, [name]))
            except Exception as exc:
                self._log.warning(
                    "snapshot not planned yet, trying again",
                    destination=name,
                    error=describe_error(exc),
                )
                continue
            decided.append(name)
        if not decided:
            return None, decided
        try:
            return await self._automatic_plan(selection, decided), decided
        except Exception as exc:
            self._log.warning("snapshot not planned yet", error=describe_error(exc))
            return None, []

    async def _automatic_plan(self, selection: Selection, names: Sequence[str]) -> SnapshotPlan:
        return await self._snapshot.plan(
            await self.tables(),
            selection=selection,
            destinations=names,
            all_ranges=self._settings.snapshot.all_ranges,
        )

    def _report_plan(self, plan: SnapshotPlan) -> None:
        for skipped, why in plan.skipped:
            self._log.warning("table not snapshotted", table=skipped, why=why)
        for table in plan.tables:
            self._log.info(
                "snapshot planned",
                table=table.name,
                ranges=len(table.ranges),
                to_read=len(table.to_read),
                estimated_rows=table.estimated_rows,
                destinations=sorted(table.needed),
                resumed=sorted(set(table.needed) - table.new_runs),
            )

    def _run_in_background(self, plan: SnapshotPlan, stop: asyncio.Event) -> None:
        tracker = SnapshotTracker(plan, self._metrics, self._log)
        self._tracker = tracker
        self._task = asyncio.create_task(self._run(plan, tracker, stop), name="snapshot")

    async def _run(
        self, plan: SnapshotPlan, tracker: SnapshotTracker, stop: asyncio.Event
    ) -> SnapshotReport | None:
        self._log.info("snapshot started", name=plan.name, tables=[t.name for t in plan.tables])
        async with self._logging_progress(tracker):
            try:
                report = await self._snapshot.run(plan, observer=tracker, stop=stop)
            except Exception as exc:
                tracker.ended(None, describe_error(exc))
                self._log.error("snapshot stopped on an error", error=describe_error(exc))
                return None
        tracker.ended(report)
        self._log.info(
            "snapshot ended",
            name=plan.name,
            state=tracker.state,
            rows=report.rows,
            finished=[f"{t} -> {d}" for t, d in report.finished],
            failed={f"{t} -> {d}": len(r) for (t, d), r in report.failed.items()},
        )
        return report

    @contextlib.asynccontextmanager
    async def _logging_progress(self, tracker: SnapshotTracker) -> AsyncIterator[None]:
        async def log_every() -> None:
            while True:
                await asyncio.sleep(self._settings.snapshot.progress_interval_s)
                for table in tracker.to_json()["tables"]:
                    self._log.info(
                        "snapshot progress",
                        table=table["table"],
                        rows=table["rows"],
                        rows_per_s=table["rows_per_s"],
                        ranges_done=table["ranges"]["done"],
                        ranges=table["ranges"]["to_read"],
                        eta_s=table["eta_s"],
                    )

        task = asyncio.create_task(log_every(), name="snapshot progress log")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _source_tables(self) -> tuple[str, ...]:
        source = self._settings.source
        return source.tables if isinstance(source, CassandraSource) else ()


def _matches(patterns: Sequence[str], name: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)
