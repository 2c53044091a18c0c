"""The snapshot use case: the rows a table already holds, into destinations, while the
stream goes on.

CDC only carries writes made after it was enabled; a snapshot brings in the rest. It
reads each table as it is now, range by range (:mod:`cdc_domain.tokens`), with every
cell's real write time (:mod:`cdc_domain.snapshot_rows`), and writes what it read
through the stream's own path: masking, validation, schema evolution, the sinks'
split of poison from the rest (:mod:`cdc_domain.delivery`). The sinks are
last-write-wins, so snapshot and stream stitch whatever order they arrive in: a row
changed after it was read is overwritten by the stream's newer change, and a snapshot
cell never overwrites a newer streamed one. Nothing pauses the stream; the stream's
position needs no coordination either, because the stream of a destination keeps
every change after its position (segments are freed only once every destination is
past them) and the snapshot reads everything older that is still there.

Each range is read once for every destination that still needs it, with bounded
concurrency; a destination's progress is recorded per range once all of the range is
written there (:mod:`cdc_domain.snapshot_progress`), so a restarted snapshot reads only
the ranges it had not finished. A range that keeps failing (the read, or one
destination's writes) goes to the dead letter queue with its bounds and the error, and
the other ranges and destinations go on. Snapshot batches carry no checkpoint: they
never move a destination's stream position.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import attrs

from cdc_domain.dead_letters import DeadLetterEvent, FailureReason, dead_letter_id
from cdc_domain.delivery import write_splitting_poison
from cdc_domain.errors import FailureClass, SinkError, classify, describe_error
from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.masking import MaskingPolicy, MaskOnce
from cdc_domain.ports import Clock, DeadLetterQueue, SnapshotSource
from cdc_domain.replication import Destination
from cdc_domain.routing import mask_events, route_events
from cdc_domain.schema import TableSchema
from cdc_domain.schema_evolution import SchemaEvolution
from cdc_domain.snapshot_progress import SnapshotProgress, TableProgress
from cdc_domain.snapshot_rows import SnapshotRow, snapshot_events
from cdc_domain.tokens import TokenRange, split_ring
from cdc_domain.validation import EventValidator

__all__ = [
    "NullObserver",
    "PlannedTable",
    "Selection",
    "Snapshot",
    "SnapshotObserver",
    "SnapshotPlan",
    "SnapshotReport",
    "SnapshotTuning",
]


_COUNTERS = (
    "its counter columns hold totals: read while increments stream in, a total would "
    "count some of them twice"
)


class Selection(enum.Enum):
    """Which (table, destination) pairs a plan snapshots.

    ``RESUME``: every pair asked for; an unfinished run is resumed, a finished one is
    read again from the start (the re-sync remedy). ``RESTART``: every pair, from the
    start. ``INITIAL``: pairs whose destination has no stream position yet (it is new)
    and no finished snapshot, and unfinished runs. ``WHEN_NEEDED``: every pair with no
    finished snapshot (a destination added later, a table newly captured)."""

    RESUME = "resume"
    RESTART = "restart"
    INITIAL = "initial"
    WHEN_NEEDED = "when_needed"


@attrs.frozen
class SnapshotTuning:
    """``concurrency`` ranges are read at once; the ring is split so a range holds about
    ``range_partitions`` partitions (by the node's estimate) and there are at least
    ``min_ranges`` ranges and four per concurrent read (more ranges: less to read again
    after a crash). A range is tried ``range_attempts`` times, pausing
    ``retry_initial_s`` doubling up to ``retry_max_s`` between tries."""

    concurrency: int = 4
    range_partitions: int = 50_000
    min_ranges: int = 16
    range_attempts: int = 5
    retry_initial_s: float = 1.0
    retry_max_s: float = 30.0


@attrs.frozen
class PlannedTable:
    """One table's part of a plan: the ranges this agent reads (``ranges``, split
    ``pieces`` per ring range), and per destination the run its progress is recorded
    under and the ranges it still needs; ``new_runs`` are the destinations starting a
    run (the others resume one). ``recorded`` is False for a re-sync of given token
    ranges, whose progress is not recorded."""

    schema: TableSchema
    ranges: tuple[TokenRange, ...]
    pieces: int
    runs: Mapping[str, str]
    needed: Mapping[str, frozenset[TokenRange]]
    new_runs: frozenset[str] = frozenset()
    estimate: int | None = None
    recorded: bool = True

    @property
    def name(self) -> str:
        return self.schema.qualified_name

    @property
    def to_read(self) -> tuple[TokenRange, ...]:
        """The ranges some destination still needs, in token order."""
        wanted = frozenset().union(*self.needed.values()) if self.needed else frozenset()
        return tuple(r for r in self.ranges if r in wanted)

    @property
    def fraction_to_read(self) -> float:
        """The share of this agent's token space still to read (for estimates)."""
        total = sum(r.width for r in self.ranges)
        return sum(r.width for r in self.to_read) / total if total else 0.0

    @property
    def estimated_rows(self) -> int | None:
        """Partitions left to read, by the node's estimate (None when unknown)."""
        if self.estimate is None:
            return None
        return round(self.estimate * self.fraction_to_read)


@attrs.frozen
class SnapshotPlan:
    """What a snapshot will read: ``name`` marks its events' positions. ``skipped``
    names the tables asked for that cannot be snapshotted, and why."""

    name: str
    tables: tuple[PlannedTable, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not any(t.to_read for t in self.tables) and not self.unfinished

    @property
    def unfinished(self) -> tuple[tuple[str, str], ...]:
        """(table, destination) pairs with nothing left to read whose run is not yet
        recorded as finished (a crash after the last range)."""
        return tuple(
            (t.name, d)
            for t in self.tables
            if t.recorded
            for d, left in t.needed.items()
            if not left
        )


@attrs.frozen
class SnapshotReport:
    """What a run did: rows read per table, events written per (table, destination),
    ranges that failed per (table, destination) with their error, and the pairs whose
    snapshot finished. ``stopped`` when a stop ended it before every range was read."""

    rows: Mapping[str, int]
    written: Mapping[tuple[str, str], int]
    failed: Mapping[tuple[str, str], tuple[tuple[TokenRange, str], ...]]
    finished: tuple[tuple[str, str], ...]
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stopped


class SnapshotObserver(Protocol):
    """What a running snapshot reports, for progress bars, metrics and status."""

    def range_started(self, table: str, token_range: TokenRange) -> None: ...

    def rows_read(self, table: str, rows: int) -> None: ...

    def written(self, table: str, destination: str, events: int) -> None: ...

    def range_finished(
        self, table: str, token_range: TokenRange, destinations: Sequence[str]
    ) -> None: ...

    def range_failed(
        self, table: str, token_range: TokenRange, destination: str, error: str
    ) -> None: ...

    def table_finished(self, table: str, destination: str) -> None: ...


class NullObserver:
    """Reports nowhere."""

    def range_started(self, table: str, token_range: TokenRange) -> None:
        return None

    def rows_read(self, table: str, rows: int) -> None:
        return None

    def written(self, table: str, destination: str, events: int) -> None:
        return None

    def range_finished(
        self, table: str, token_range: TokenRange, destinations: Sequence[str]
    ) -> None:
        return None

    def range_failed(
        self, table: str, token_range: TokenRange, destination: str, error: str
    ) -> None:
        return None

    def table_finished(self, table: str, destination: str) -> None:
        return None


class _Blocked(SinkError):
    """The destination cannot take the table now (schema incompatible, paused)."""


@attrs.define
class _Tally:
    rows: dict[str, int] = attrs.field(factory=dict)
    written: dict[tuple[str, str], int] = attrs.field(factory=dict)
    failed: dict[tuple[str, str], list[tuple[TokenRange, str]]] = attrs.field(factory=dict)
    finished: list[tuple[str, str]] = attrs.field(factory=list)


class Snapshot:
    """Plans and runs snapshots of tables into destinations.

    ``partition_id`` names this agent (its source's partition): it is the namespace of
    its progress records. ``evolution`` should be the stream's own, so a table's DDL is
    applied once whichever of the two gets there first.
    """

    def __init__(
        self,
        *,
        source: SnapshotSource,
        destinations: Sequence[Destination],
        dead_letters: DeadLetterQueue,
        clock: Clock,
        masking: MaskingPolicy,
        evolution: SchemaEvolution,
        partition_id: str,
        validator: EventValidator | None = None,
        tuning: SnapshotTuning | None = None,
    ) -> None:
        self._source = source
        self._destinations = {d.name: d for d in destinations}
        self._dlq = dead_letters
        self._clock = clock
        self._policy = masking
        self._evolution = evolution
        self._partition_id = partition_id
        self._progress = SnapshotProgress(partition_id)
        self._validator = validator or EventValidator()
        self._tuning = tuning or SnapshotTuning()

    @property
    def destinations(self) -> tuple[str, ...]:
        return tuple(self._destinations)

    async def progress(self, tables: Iterable[str] | None = None) -> list[TableProgress]:
        """The recorded progress of every table (of ``tables``) in every destination."""
        found: list[TableProgress] = []
        for name, destination in self._destinations.items():
            recorded = await self._progress.load(destination.offsets, name, tables)
            found.extend(recorded.values())
        return found

    async def plan(
        self,
        tables: Sequence[TableSchema],
        *,
        selection: Selection,
        destinations: Sequence[str] | None = None,
        all_ranges: bool = False,
        within: TokenRange | None = None,
    ) -> SnapshotPlan:
        """What a run would read; reads the ring and the recorded progress, writes
        nothing (``--dry-run`` prints it). ``within`` re-reads only those tokens, and
        such a run's progress is not recorded."""
        names = list(self._destinations) if destinations is None else list(destinations)
        unknown = [n for n in names if n not in self._destinations]
        if unknown:
            raise ValueError(f"no destination named {', '.join(map(repr, unknown))}")
        now = self._clock.now()
        job = now.strftime("%Y%m%dT%H%M%S.%fZ")
        recorded = {n: await self._load_progress(n, tables) for n in names}
        streamed = {
            n: await self._destinations[n].offsets.load(n, self._partition_id) is not None
            for n in names
        }
        planned = []
        skipped = []
        for schema in tables:
            if any(c.type.name == "counter" for c in schema.columns):
                skipped.append((schema.qualified_name, _COUNTERS))
                continue
            progress = {n: recorded[n][schema.qualified_name] for n in names}
            chosen = {n: p for n, p in progress.items() if _selected(selection, p, streamed[n])}
            if chosen:
                planned.append(
                    await self._plan_table(
                        schema, chosen, job, selection, all_ranges=all_ranges, within=within
                    )
                )
        return SnapshotPlan(job, tuple(planned), tuple(skipped))

    async def _plan_table(
        self,
        schema: TableSchema,
        chosen: Mapping[str, TableProgress],
        job: str,
        selection: Selection,
        *,
        all_ranges: bool,
        within: TokenRange | None,
    ) -> PlannedTable:
        """One table's ranges, and per destination its run and what it still needs. A
        run is resumed only with the split it started with, so its finished ranges are
        found by their bounds; the table's new runs take that split too, so one read
        serves every destination."""
        ring = await self._source.ring(schema.keyspace)
        estimate = await self._source.estimate(schema.keyspace, schema.table)
        owned = sum(1 for r in ring if r.primary or all_ranges or within is not None)
        fresh = self._pieces(ranges=owned, estimate=estimate)
        if within is not None:
            ranges = tuple(split_ring(ring, fresh, all_ranges=True, within=within))
            return PlannedTable(
                schema,
                ranges,
                fresh,
                dict.fromkeys(chosen, job),
                dict.fromkeys(chosen, frozenset(ranges)),
                frozenset(),
                estimate,
                recorded=False,
            )
        resumable = {
            n: p
            for n, p in chosen.items()
            if selection is not Selection.RESTART and p.run is not None and not p.finished
        }
        pieces = next((p.pieces for p in resumable.values()), fresh)
        ranges = tuple(split_ring(ring, pieces, all_ranges=all_ranges))
        runs: dict[str, str] = {}
        needed: dict[str, frozenset[TokenRange]] = {}
        new_runs: set[str] = set()
        for name in chosen:
            found = resumable.get(name)
            if found is not None and found.run is not None and found.pieces == pieces:
                runs[name] = found.run
                needed[name] = frozenset(r for r in ranges if r not in found.ranges)
            else:
                runs[name] = job
                needed[name] = frozenset(ranges)
                new_runs.add(name)
        return PlannedTable(schema, ranges, pieces, runs, needed, frozenset(new_runs), estimate)

    async def begin(self, plan: SnapshotPlan) -> None:
        """Record that each new run started (before streaming starts, so a crash later
        resumes it rather than taking the destination for one that streamed long ago)."""
        for table in plan.tables:
            if not table.recorded:
                continue
            for name in sorted(table.new_runs):
                await self._progress.start(
                    self._destinations[name].offsets,
                    name,
                    table.name,
                    run=table.runs[name],
                    pieces=table.pieces,
                    ranges=len(table.ranges),
                )

    async def run(
        self,
        plan: SnapshotPlan,
        *,
        observer: SnapshotObserver | None = None,
        stop: asyncio.Event | None = None,
    ) -> SnapshotReport:
        """Read every planned range once, into every destination that needs it; then
        record each (table, destination) whose ranges are all done as finished."""
        observer = observer or NullObserver()
        stop = stop or asyncio.Event()
        tally = _Tally()
        work: asyncio.Queue[tuple[PlannedTable, int, TokenRange]] = asyncio.Queue()
        left: dict[str, int] = {}
        for table in plan.tables:
            tally.rows[table.name] = 0
            to_read = set(table.to_read)
            left[table.name] = len(to_read)
            for ordinal, token_range in enumerate(table.ranges):
                if token_range in to_read:
                    work.put_nowait((table, ordinal, token_range))
            if not to_read:
                await self._finish(table, tally, observer)

        async def worker() -> None:
            while not stop.is_set():
                try:
                    table, ordinal, token_range = work.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self._range(plan, table, ordinal, token_range, observer, tally, stop)
                left[table.name] -= 1
                if not left[table.name] and not stop.is_set():
                    await self._finish(table, tally, observer)

        workers = [asyncio.create_task(worker()) for _ in range(self._tuning.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
        return SnapshotReport(
            rows=dict(tally.rows),
            written=dict(tally.written),
            failed={k: tuple(v) for k, v in tally.failed.items()},
            finished=tuple(tally.finished),
            stopped=stop.is_set(),
        )

    # -- one range ---------------------------------------------------------------------

    async def _range(
        self,
        plan: SnapshotPlan,
        table: PlannedTable,
        ordinal: int,
        token_range: TokenRange,
        observer: SnapshotObserver,
        tally: _Tally,
        stop: asyncio.Event,
    ) -> None:
        """Read the range for the destinations needing it and record it for those that
        took all of it; read it again for those that failed, with a growing pause, as
        long as retrying can help; then dead-letter it for those still failing."""
        waiting = [d for d, left in table.needed.items() if token_range in left]
        errors: dict[str, Exception] = {}
        pause = self._tuning.retry_initial_s
        for attempt in range(1, self._tuning.range_attempts + 1):
            observer.range_started(table.name, token_range)
            try:
                rows, written, errors = await self._read_range(
                    plan, table, ordinal, token_range, waiting, observer, stop
                )
            except Exception as exc:  # the read itself: every destination waits on it
                errors = dict.fromkeys(waiting, exc)
            else:
                if stop.is_set():
                    return
                tally.rows[table.name] += rows
                done = []
                for name in (d for d in waiting if d not in errors):
                    try:
                        await self._range_done(table, token_range, name, rows, written[name], tally)
                    except Exception as exc:  # written but not recorded: read it again
                        errors[name] = exc
                    else:
                        done.append(name)
                if done:
                    observer.range_finished(table.name, token_range, done)
            if stop.is_set():
                return
            waiting = [d for d in waiting if d in errors]
            hopeless = all(classify(e) is FailureClass.PERMANENT for e in errors.values())
            if not waiting or hopeless or attempt == self._tuning.range_attempts:
                break
            await _pause(stop, pause)
            pause = min(pause * 2, self._tuning.retry_max_s)
        if stop.is_set():
            return
        for name in waiting:
            error = describe_error(errors[name])
            await self._range_failed(plan, table, ordinal, token_range, name, error)
            tally.failed.setdefault((table.name, name), []).append((token_range, error))
            observer.range_failed(table.name, token_range, name, error)

    async def _range_done(
        self,
        table: PlannedTable,
        token_range: TokenRange,
        name: str,
        rows: int,
        written: int,
        tally: _Tally,
    ) -> None:
        key = (table.name, name)
        tally.written[key] = tally.written.get(key, 0) + written
        if table.recorded:
            await self._progress.finish_range(
                self._destinations[name].offsets,
                name,
                table.name,
                run=table.runs[name],
                token_range=token_range,
                rows=rows,
                events=written,
            )

    async def _read_range(
        self,
        plan: SnapshotPlan,
        table: PlannedTable,
        ordinal: int,
        token_range: TokenRange,
        destinations: list[str],
        observer: SnapshotObserver,
        stop: asyncio.Event,
    ) -> tuple[int, dict[str, int], dict[str, Exception]]:
        """One read of the range: rows read, events written per destination, and the
        destinations that failed on it (with the error); the read's own failure is
        raised."""
        rows = 0
        index = 0
        written = dict.fromkeys(destinations, 0)
        failed: dict[str, Exception] = {}
        schema = table.schema
        async for page in self._source.read(schema, token_range):
            if stop.is_set():
                break
            events = self._page_events(page, schema, plan.name, ordinal, index)
            index += len(events)
            regular = sum(not row.static for row in page)
            rows += regular
            observer.rows_read(table.name, regular)
            active = [d for d in destinations if d not in failed]
            # Masked once for every destination, remembered only for this page: a cache
            # living longer would keep every event alive for the garbage collector to scan.
            masking = MaskOnce(self._policy, size=len(events) + 1)
            results = await asyncio.gather(
                *(self._deliver(d, schema, events, masking) for d in active),
                return_exceptions=True,
            )
            for name, result in zip(active, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result
                    failed[name] = result
                else:
                    written[name] += result
                    observer.written(table.name, name, result)
            if len(failed) == len(destinations):
                break
        return rows, written, failed

    def _page_events(
        self, page: list[SnapshotRow], schema: TableSchema, name: str, ordinal: int, index: int
    ) -> list[ChangeEvent]:
        """The page's events, numbered from ``index``. Building them allocates a few
        objects per cell and no reference cycle, so the cyclic collector, which would
        scan them all again and again, is paused meanwhile (a fifth of the snapshot's
        CPU time, measured)."""
        captured_at = self._clock.now()
        events: list[ChangeEvent] = []
        collecting = gc.isenabled()
        gc.disable()
        try:
            for row in page:
                events.extend(
                    snapshot_events(
                        row,
                        keyspace=schema.keyspace,
                        table=schema.table,
                        snapshot=name,
                        offset=ordinal,
                        first_index=index + len(events),
                        captured_at=captured_at,
                    )
                )
        finally:
            if collecting:
                gc.enable()
        return events

    async def _deliver(
        self, name: str, schema: TableSchema, events: list[ChangeEvent], masking: MaskOnce
    ) -> int:
        """One page into one destination, as the stream delivers a batch; returns the
        events written. A table the destination cannot take now fails the range."""
        destination = self._destinations[name]
        sink = destination.sink
        now = self._clock.now()
        masked, dead = mask_events(events, masking=masking, destination=name, now=now)
        schemas = {schema.qualified_name: schema}
        _, blocked = await self._evolution.prepare(sink, schemas, now)
        if schema.qualified_name in blocked:
            raise _Blocked(blocked[schema.qualified_name].advice)
        routed = route_events(
            masked,
            schemas=schemas,
            validator=self._validator,
            destination=name,
            kind=sink.kind,
            now=now,
        )
        dead.extend(routed.dead_letters)
        if dead:
            await self._dlq.write(dead)

        async def rejected(letters: list[DeadLetterEvent], _: SinkError) -> None:
            await self._dlq.write(letters)

        return await write_splitting_poison(
            sink, routed.valid, routed.schemas, None, rejected, self._clock
        )

    async def _range_failed(
        self,
        plan: SnapshotPlan,
        table: PlannedTable,
        ordinal: int,
        token_range: TokenRange,
        destination: str,
        error: str,
    ) -> None:
        """One dead letter per range and destination, naming what to run to read it
        again; its id is stable, so the range failing again replaces it."""
        command = f"cdc-app snapshot --table {table.name} --token-range {token_range}"
        await self._dlq.write(
            [
                DeadLetterEvent(
                    dlq_id=dead_letter_id(
                        FailureReason.SNAPSHOT_ERROR,
                        destination,
                        f"snapshot {table.name} {token_range}",
                        None,
                    ),
                    reason=FailureReason.SNAPSHOT_ERROR,
                    error=error,
                    failed_at=self._clock.now(),
                    destination=destination,
                    schema_details={
                        "table": table.name,
                        "token_range": str(token_range),
                        "run": table.runs.get(destination, plan.name),
                        "command": command,
                    },
                    position=SourcePosition(-1, ordinal, 0, plan.name),
                )
            ]
        )

    async def _finish(self, table: PlannedTable, tally: _Tally, observer: SnapshotObserver) -> None:
        for name in table.needed:
            if (table.name, name) in tally.failed:
                continue
            if table.recorded:
                await self._progress.finish(
                    self._destinations[name].offsets,
                    name,
                    table.name,
                    run=table.runs[name],
                    ranges=len(table.ranges),
                )
            tally.finished.append((table.name, name))
            observer.table_finished(table.name, name)

    # -- planning helpers ------------------------------------------------------------

    async def _load_progress(
        self, name: str, tables: Sequence[TableSchema]
    ) -> dict[str, TableProgress]:
        store = self._destinations[name].offsets
        return await self._progress.load(store, name, [t.qualified_name for t in tables])

    def _pieces(self, *, ranges: int, estimate: int | None) -> int:
        """Pieces per ring range, of the ``ranges`` this agent reads: at least
        ``min_ranges`` and enough for the concurrency, about ``range_partitions``
        partitions each."""
        tuning = self._tuning
        wanted = max(tuning.min_ranges, tuning.concurrency * 4)
        if estimate:
            wanted = max(wanted, math.ceil(estimate / tuning.range_partitions))
        return max(1, math.ceil(wanted / max(ranges, 1)))


def _selected(selection: Selection, progress: TableProgress, streamed: bool) -> bool:
    if selection in (Selection.RESUME, Selection.RESTART):
        return True
    unfinished = progress.run is not None and not progress.finished
    if selection is Selection.INITIAL:
        return unfinished or (progress.run is None and not streamed)
    return not progress.finished


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return
