"""Dead letters are never lost: a crash at any step of a batch leaves every dead letter
of what the committed offset covers stored, and a restart ends with each stored once.

The process dies at one durable step — dead letters stored, a batch written (with its
offset, by a sink that commits offsets), an offset committed — either just before the
step or just after it took effect; what the in-memory stores hold is what a real
process would find again after a restart. The crash is a BaseException, which nothing
on the way handles, as nothing handles SIGKILL.
"""

from __future__ import annotations

import pytest

from cdc_adapters.memory import (
    ManualClock,
    MemoryChangeSource,
    MemoryDeadLetterQueue,
    MemoryOffsetStore,
    MemorySchemaHistory,
    MemorySchemaSource,
    MemorySink,
)
from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import EventsRejectedError
from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.masking import MaskingPolicy
from cdc_domain.replication import Destination, ReplicateBatch
from tests.factories import event, replica_copy, table
from tests.unit.domain.conftest import ORDERS

NAME = "pg"
PARTITION = "node1"


class Crash(BaseException):
    """The process dying at a chosen step."""


class Tripwire:
    """Numbers the durable steps as they happen and kills the process at one of them,
    ``before`` it or after it took effect."""

    def __init__(self, at: int | None = None, *, before: bool = False) -> None:
        self.at = at
        self.before = before
        self.steps: list[str] = []
        self.crashed: str | None = None

    async def step(self, name: str, action) -> None:
        index = len(self.steps)
        self.steps.append(name)
        if index == self.at and self.before:
            self.crashed = f"before {name}"
            raise Crash
        await action()
        if index == self.at:
            self.crashed = f"after {name}"
            raise Crash


class Process:
    """The running process's tripwire, replaced at each restart."""

    def __init__(self) -> None:
        self.tripwire = Tripwire()


class CrashingQueue(MemoryDeadLetterQueue):
    def __init__(self, process: Process) -> None:
        super().__init__()
        self._process = process

    async def write(self, entries):
        parent = super()
        await self._process.tripwire.step("dead letters", lambda: parent.write(entries))


class CrashingOffsets(MemoryOffsetStore):
    def __init__(self, clock, process: Process) -> None:
        super().__init__(clock)
        self._process = process

    async def commit(self, destination, checkpoint):
        parent = super()
        await self._process.tripwire.step("offset", lambda: parent.commit(destination, checkpoint))


class RefusingSink(MemorySink):
    """A PostgreSQL-kind memory sink that refuses the status "bad", as a database
    refuses a value, and takes part in the crashes."""

    def __init__(self, process: Process, offsets=None) -> None:
        super().__init__(NAME, DestinationKind.POSTGRES, offsets=offsets)
        self._process = process

    async def write(self, batch):
        bad = [e.event_id for e in batch.events if e.columns.get("status") == "bad"]
        if bad:
            raise EventsRejectedError("value out of range", bad)
        parent = super()
        await self._process.tripwire.step("batch", lambda: parent.write(batch))


class World:
    """What survives a crash: the source's log, the dead letters, the sink, the offsets."""

    def __init__(self, commits_offsets: bool) -> None:
        self.process = Process()
        self.clock = ManualClock()
        self.source = MemoryChangeSource(PARTITION)
        self.dlq = CrashingQueue(self.process)
        self.history = MemorySchemaHistory()
        self.schemas = MemorySchemaSource([ORDERS, table("items")])
        own = MemoryOffsetStore(self.clock) if commits_offsets else None
        self.sink = RefusingSink(self.process, own)
        self.offsets = (
            self.sink.offset_store(self.clock)
            if commits_offsets
            else CrashingOffsets(self.clock, self.process)
        )

    def agent(self, tripwire: Tripwire) -> ReplicateBatch:
        """A freshly started process: nothing in memory but what it reads back."""
        self.process.tripwire = tripwire
        return ReplicateBatch(
            source=self.source,
            schemas=self.schemas,
            destinations=[Destination(self.sink, self.offsets)],
            dead_letters=self.dlq,
            clock=self.clock,
            masking=MaskingPolicy(),
            history=self.history,
        )

    async def committed(self) -> SourcePosition | None:
        record = await self.offsets.load(NAME, PARTITION)
        return record.position if record else None


def stream(world: World) -> tuple[list[ChangeEvent], dict[SourcePosition, str]]:
    """Good events, and the dead letter id due at each bad one's position: a table
    without a schema, a counter PostgreSQL cannot hold, values the sink refuses, an
    entry that cannot be decoded."""
    good, due = [], {}
    bad_status = event(key=5, ts=5, columns={"status": "bad"}, position=SourcePosition(1, 50))
    items = [
        event(key=1, ts=1, columns={"status": "a"}, position=SourcePosition(1, 10)),
        event(key=2, ts=2, table="ghost", columns={"x": 1}, position=SourcePosition(1, 20)),
        event(key=3, ts=3, counters={"hits": 1}, position=SourcePosition(1, 30)),
        event(key=4, ts=4, columns={"status": "b"}, position=SourcePosition(1, 40)),
        bad_status,
        event(key=7, ts=7, columns={"status": "c"}, position=SourcePosition(1, 70)),
        replica_copy(bad_status, PARTITION, SourcePosition(1, 80)),
        event(key=9, ts=9, columns={"status": "bad"}, position=SourcePosition(1, 90)),
        event(key=10, ts=10, columns={"status": "d"}, position=SourcePosition(1, 100)),
    ]
    reasons = {
        2: FailureReason.UNKNOWN_TABLE,
        3: FailureReason.SCHEMA_INCOMPATIBLE,
        5: FailureReason.PROCESSING_ERROR,
        9: FailureReason.PROCESSING_ERROR,
    }
    for item in items:
        world.source.append(item)
        reason = reasons.get(item.partition_key["id"])
        if reason is None:
            good.append(item)
            continue
        letter = DeadLetterEvent.for_event(
            item, reason=reason, error="", failed_at=world.clock.now(), destination=NAME
        )
        due[item.position] = letter.dlq_id
        if item.position == SourcePosition(1, 30):
            raw = DeadLetterEvent.for_raw(
                b"\x00",
                reason=FailureReason.DECODE_ERROR,
                error="CRC mismatch",
                failed_at=world.clock.now(),
                position=SourcePosition(1, 35),
            )
            world.source.fail(raw)
            due[raw.position] = raw.dlq_id
    return good, due


async def run(world: World, tripwire: Tripwire) -> None:
    agent = world.agent(tripwire)
    for _ in range(20):
        for outcome in await agent(max_events=3):
            if outcome.error is not None:
                raise outcome.error
        if await world.committed() == SourcePosition(1, 100):
            return
    raise AssertionError("the stream was not delivered")


async def stored(world: World) -> set[str]:
    return {e.dlq_id for e in await world.dlq.list(include_replayed=True)}


@pytest.mark.parametrize("commits_offsets", [False, True], ids=["offset store", "sink"])
@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
async def test_a_crash_at_any_step_loses_no_dead_letter_and_stores_none_twice(
    commits_offsets, before
):
    steps = len(await _complete_run(commits_offsets))
    crashes = []
    for at in range(steps):
        world = World(commits_offsets)
        good, due = stream(world)
        tripwire = Tripwire(at, before=before)
        with pytest.raises(Crash):
            await run(world, tripwire)
        crashes.append(tripwire.crashed)
        committed = await world.committed()
        held = await stored(world)
        covered = [p for p in due if committed is not None and p <= committed]
        lost = [p for p in covered if due[p] not in held]
        assert not lost, f"crashed {tripwire.crashed}: the offset passed {lost} unrecorded"

        await run(world, Tripwire())  # restarted: from the committed offset, to the end
        assert await stored(world) == set(due.values())
        assert sorted(world.sink.state.rows("shop.orders")) == sorted(
            ((e.partition_key["id"],), ()) for e in good
        )
        record = await world.offsets.load(NAME, PARTITION)
        assert record.events_processed == 9  # each event once (the raw entry is none)
    # Every kind of step was crashed at, the gap between dead letters and offset too.
    assert {"dead letters", "batch"} <= {c.split(" ", 1)[1] for c in crashes}
    assert ("offset" in {c.split(" ", 1)[1] for c in crashes}) != commits_offsets


async def _complete_run(commits_offsets: bool) -> list[str]:
    world = World(commits_offsets)
    _, due = stream(world)
    tripwire = Tripwire()
    await run(world, tripwire)
    assert await stored(world) == set(due.values())
    return tripwire.steps
