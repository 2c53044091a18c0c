"""The snapshot use case with in-memory ports: rows into every destination through the
stream's path, progress recorded per range, resumed after a stop, ranges that keep
failing dead-lettered, and the choice of what to snapshot."""

import asyncio
import datetime as dt

import pytest

from cdc_adapters.memory import (
    ManualClock,
    MemoryDeadLetterQueue,
    MemoryOffsetStore,
    MemorySchemaHistory,
    MemorySink,
    MemorySnapshotSource,
)
from cdc_adapters.memory.snapshot import even_ring
from cdc_domain.dead_letters import FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import EventsRejectedError
from cdc_domain.events import SourcePosition
from cdc_domain.masking import REDACTED, MaskingPolicy
from cdc_domain.offsets import Checkpoint
from cdc_domain.replay import unreplayable
from cdc_domain.replication import Destination
from cdc_domain.schema_evolution import SchemaEvolution
from cdc_domain.snapshot import Selection, Snapshot, SnapshotTuning
from cdc_domain.snapshot_progress import SnapshotProgress, is_snapshot_record
from cdc_domain.snapshot_rows import SnapshotCell, SnapshotRow
from cdc_domain.tokens import RingRange, TokenRange
from tests.factories import table

USERS = table("users", regular={"name": "text", "email": "text", "age": "int"})
READ_AT = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
FAST = SnapshotTuning(concurrency=2, range_attempts=3, retry_initial_s=0.001, retry_max_s=0.002)


def user(i, ts=100):
    return SnapshotRow(
        partition_key={"id": i},
        clustering_key={},
        cells={
            "name": SnapshotCell(f"n{i}", ts),
            "email": SnapshotCell(f"u{i}@example.com", ts),
            "age": SnapshotCell(i, ts + 1),
        },
        collections={},
        identity=str(i),
        read_at=READ_AT,
    )


class World:
    def __init__(self, rows=60, ring=None):
        self.clock = ManualClock()
        self.source = MemorySnapshotSource(ring or even_ring(4), page_rows=7)
        self.source.put(USERS.qualified_name, [user(i) for i in range(rows)])
        self.offsets = MemoryOffsetStore(self.clock)
        self.dlq = MemoryDeadLetterQueue()
        self.history = MemorySchemaHistory()

    def snapshot(self, *sinks, tuning=FAST, masking=None, partition="node1"):
        return Snapshot(
            source=self.source,
            destinations=[Destination(sink, self.offsets) for sink in sinks],
            dead_letters=self.dlq,
            clock=self.clock,
            masking=masking or MaskingPolicy(),
            evolution=SchemaEvolution(self.history),
            partition_id=partition,
            tuning=tuning,
        )


async def run(snapshot, selection=Selection.RESUME, **options):
    plan = await snapshot.plan([USERS], selection=selection, **options)
    await snapshot.begin(plan)
    return plan, await snapshot.run(plan)


async def test_every_row_reaches_every_destination_masked_with_its_write_time():
    world = World()
    a, b = MemorySink("a"), MemorySink("b")
    plan, report = await run(world.snapshot(a, b))
    rows = a.state.rows(USERS.qualified_name)
    assert len(rows) == 60
    assert rows[((7,), ())] == {"name": "n7", "email": REDACTED, "age": 7}
    assert b.state.rows(USERS.qualified_name) == rows
    assert report.ok
    assert report.rows == {USERS.qualified_name: 60}
    assert report.written == {(USERS.qualified_name, "a"): 120, (USERS.qualified_name, "b"): 120}
    assert set(report.finished) == {(USERS.qualified_name, "a"), (USERS.qualified_name, "b")}
    assert all(batch.checkpoint is None for batch in a.batches)
    assert all(e.is_snapshot for batch in a.batches for e in batch.events)
    assert len(world.source.reads) == len(plan.tables[0].ranges)  # each range read once


async def test_progress_is_recorded_per_range_beside_and_apart_from_stream_positions():
    world = World()
    await world.offsets.commit("a", Checkpoint("node1", SourcePosition(9, 90), 5))
    plan, _ = await run(world.snapshot(MemorySink("a")))
    (progress,) = await world.snapshot(MemorySink("a")).progress()
    assert progress.finished
    assert progress.run == plan.name
    assert set(progress.ranges) == set(plan.tables[0].ranges)
    assert progress.rows == 60
    stream = await world.offsets.load("a", "node1")
    assert stream.position == SourcePosition(9, 90)
    records = await world.offsets.list()
    assert [r.partition_id for r in records if not is_snapshot_record(r)] == ["node1"]


async def test_a_stopped_snapshot_resumes_with_the_ranges_it_had_not_finished():
    world = World(rows=200)
    sink = MemorySink("a")
    first = world.snapshot(sink, tuning=SnapshotTuning(concurrency=1))
    plan = await first.plan([USERS], selection=Selection.INITIAL)
    await first.begin(plan)
    stop = asyncio.Event()

    class StopAfterTwo:
        finished = 0

        def __getattr__(self, name):
            return lambda *args: None

        def range_finished(self, *args):
            self.finished += 1
            if self.finished == 2:
                stop.set()

    report = await first.run(plan, observer=StopAfterTwo(), stop=stop)
    assert report.stopped
    assert not report.finished
    read_first = [r for _, r in world.source.reads]
    world.source.reads.clear()
    again = world.snapshot(sink, tuning=SnapshotTuning(concurrency=1))
    resumed = await again.plan([USERS], selection=Selection.INITIAL)
    assert resumed.tables[0].runs == {"a": plan.name}
    assert resumed.tables[0].new_runs == frozenset()
    await again.begin(resumed)
    report = await again.run(resumed)
    assert report.finished == ((USERS.qualified_name, "a"),)
    read_again = [r for _, r in world.source.reads]
    assert set(read_again) == set(plan.tables[0].ranges) - set(read_first[:2])
    assert len(sink.state.rows(USERS.qualified_name)) == 200
    done = await again.plan([USERS], selection=Selection.INITIAL)
    assert done.tables == ()


async def test_a_range_that_keeps_failing_is_dead_lettered_with_its_bounds_and_the_rest_go_on():
    world = World(rows=100)
    planned = await world.snapshot(MemorySink("a")).plan([USERS], selection=Selection.RESUME)
    bad = planned.tables[0].ranges[1]
    world.source.fail[bad] = 10
    world.source.fail_after = 1
    sink = MemorySink("a")
    snapshot = world.snapshot(sink)
    _, report = await run(snapshot)
    assert not report.ok
    ((_, error),) = report.failed[(USERS.qualified_name, "a")]
    assert "timed out" in error
    assert [r for _, r in world.source.reads].count(bad) == FAST.range_attempts
    (letter,) = await world.dlq.list(reason=FailureReason.SNAPSHOT_ERROR)
    assert letter.destination == "a"
    assert letter.schema_details["token_range"] == str(bad)
    assert letter.schema_details["command"] == (
        f"cdc-app snapshot --table shop.users --token-range {bad}"
    )
    assert "snapshot range" in unreplayable(letter, ["a"])
    in_bad = [r for r in range(100) if bad.start < MemorySnapshotSource.token(user(r)) <= bad.end]
    rows = sink.state.rows(USERS.qualified_name)
    assert len(rows) >= 100 - len(in_bad)  # rows of its first page may have landed
    (progress,) = await snapshot.progress()
    assert not progress.finished
    assert bad not in progress.ranges
    assert len(progress.ranges) == len(planned.tables[0].ranges) - 1
    world.source.reads.clear()
    world.source.fail.clear()
    _, report = await run(world.snapshot(sink))
    assert report.ok
    assert [r for _, r in world.source.reads] == [bad]
    assert len(sink.state.rows(USERS.qualified_name)) == 100


async def test_a_transient_read_failure_is_retried_and_the_range_recorded_once():
    world = World(rows=50)
    flaky = (
        (await world.snapshot(MemorySink("a")).plan([USERS], selection=Selection.RESUME))
        .tables[0]
        .ranges[2]
    )
    world.source.fail[flaky] = 1
    _, report = await run(world.snapshot(MemorySink("a")))
    assert report.ok
    assert [r for _, r in world.source.reads].count(flaky) == 2


async def test_poison_events_are_dead_lettered_one_by_one_and_the_range_still_finishes():
    class Picky(MemorySink):
        async def write(self, batch):
            bad = [e.event_id for e in batch.events if e.columns.get("age") == 13]
            if bad:
                raise EventsRejectedError("age 13 refused", bad)
            await super().write(batch)

    world = World(rows=30)
    sink = Picky("a", DestinationKind.POSTGRES)
    _, report = await run(world.snapshot(sink))
    assert report.ok
    (letter,) = await world.dlq.list(destination="a")
    assert letter.reason is FailureReason.PROCESSING_ERROR
    assert letter.event.is_snapshot
    assert letter.event.columns == {"age": 13}  # its own write time: its own event
    assert len(sink.state.rows(USERS.qualified_name)) == 30  # the name event of row 13 landed


async def test_a_destination_that_fails_for_good_does_not_hold_back_the_others():
    class Broken(MemorySink):
        async def write(self, batch):
            raise PermissionError("no INSERT privilege")

    world = World(rows=20)
    good = MemorySink("good")
    plan, report = await run(world.snapshot(Broken("broken"), good))
    assert len(good.state.rows(USERS.qualified_name)) == 20
    assert (USERS.qualified_name, "good") in report.finished
    failed = report.failed[(USERS.qualified_name, "broken")]
    holding_rows = {
        r
        for r in plan.tables[0].ranges
        for i in range(20)
        if r.start < MemorySnapshotSource.token(user(i)) <= r.end
    }
    assert {r for r, _ in failed} == holding_rows
    assert all("PermissionError" in e for _, e in failed)
    assert len(world.source.reads) == len(plan.tables[0].ranges)  # permanent: read once


async def test_the_agent_reads_only_ranges_its_node_owns_unless_asked_for_all():
    ring = [RingRange(r.range, i % 2 == 0) for i, r in enumerate(even_ring(4))]
    world = World(rows=80, ring=ring)
    sink = MemorySink("a")
    plan, _ = await run(world.snapshot(sink))
    owned = [r.range for r in ring if r.primary]
    assert {r for _, r in world.source.reads} == {
        p for r in owned for p in r.split(plan.tables[0].pieces)
    }
    mine = sum(any(o.start < MemorySnapshotSource.token(user(i)) <= o.end for o in owned)
               for i in range(80))  # fmt: skip
    assert len(sink.state.rows(USERS.qualified_name)) == mine
    everything = MemorySink("all")
    await run(world.snapshot(everything), all_ranges=True)
    assert len(everything.state.rows(USERS.qualified_name)) == 80


async def test_initial_takes_new_destinations_and_unfinished_runs_when_needed_any_unfinished():
    world = World(rows=10)
    streaming, new = MemorySink("streaming"), MemorySink("new")
    await world.offsets.commit("streaming", Checkpoint("node1", SourcePosition(3, 3), 1))
    snapshot = world.snapshot(streaming, new)
    initial = await snapshot.plan([USERS], selection=Selection.INITIAL)
    assert list(initial.tables[0].runs) == ["new"]
    needed = await snapshot.plan([USERS], selection=Selection.WHEN_NEEDED)
    assert set(needed.tables[0].runs) == {"streaming", "new"}
    await snapshot.begin(needed)
    await snapshot.run(needed)
    assert (await snapshot.plan([USERS], selection=Selection.WHEN_NEEDED)).tables == ()
    again = await snapshot.plan([USERS], selection=Selection.RESUME)
    assert set(again.tables[0].runs) == {"streaming", "new"}  # a re-sync reads it all again
    assert again.tables[0].new_runs == frozenset({"streaming", "new"})


async def test_a_resync_of_a_token_range_reads_only_it_and_records_nothing():
    world = World(rows=40)
    sink = MemorySink("a")
    within = TokenRange(-(2**62), 2**62)
    plan, report = await run(world.snapshot(sink), within=within)
    assert report.ok
    assert all(within.start <= r.start and r.end <= within.end for _, r in world.source.reads)
    inside = sum(
        within.start < MemorySnapshotSource.token(user(i)) <= within.end for i in range(40)
    )
    assert len(sink.state.rows(USERS.qualified_name)) == inside
    assert await world.offsets.list() == []
    assert not plan.tables[0].recorded


async def test_agents_keep_their_progress_apart():
    world = World(rows=10)
    await run(world.snapshot(MemorySink("a"), partition="node1"))
    other = world.snapshot(MemorySink("a"), partition="node2")
    plan = await other.plan([USERS], selection=Selection.WHEN_NEEDED)
    assert plan.tables[0].runs["a"] == plan.name
    assert (await SnapshotProgress("node2").load(world.offsets, "a")) == {}


async def test_a_plan_names_unknown_destinations():
    world = World()
    with pytest.raises(ValueError, match="'nope'"):
        await world.snapshot(MemorySink("a")).plan(
            [USERS], selection=Selection.RESUME, destinations=["nope"]
        )


async def test_the_plan_splits_the_ring_by_the_nodes_estimate():
    world = World(rows=5)
    world.source.estimates[USERS.qualified_name] = 1_000_000
    snapshot = world.snapshot(
        MemorySink("a"), tuning=SnapshotTuning(concurrency=2, range_partitions=10_000)
    )
    plan = await snapshot.plan([USERS], selection=Selection.RESUME)
    (planned,) = plan.tables
    assert (planned.pieces, len(planned.ranges)) == (25, 100)
    assert planned.estimated_rows == 1_000_000


async def test_counter_tables_are_skipped_with_the_reason():
    world = World()
    hits = table("hits", regular={"n": "counter"})
    plan = await world.snapshot(MemorySink("a")).plan([hits, USERS], selection=Selection.RESUME)
    assert [t.name for t in plan.tables] == [USERS.qualified_name]
    ((name, why),) = plan.skipped
    assert name == hits.qualified_name
    assert "counter" in why
