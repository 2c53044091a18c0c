"""Entries of tables the schema does not know: kept, counted or skipped, by policy."""

from cdc_adapters.memory import MemoryDeadLetterQueue, MemorySink
from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.errors import TransientError
from cdc_domain.events import SourcePosition
from cdc_domain.masking import MaskingPolicy
from cdc_domain.offsets import Checkpoint
from cdc_domain.replication import Destination, ReplicateBatch
from cdc_domain.unknown_tables import UnknownTablePolicy, stored_tallies
from tests.factories import CAPTURED, event

GONE = "5a1b0c2d-0000-4000-8000-000000000001"
OTHER = "5a1b0c2d-0000-4000-8000-000000000002"


def unknown(segment: int, offset: int, table_id: str = GONE) -> DeadLetterEvent:
    return DeadLetterEvent.for_raw(
        b"\x01raw",
        reason=FailureReason.UNKNOWN_TABLE,
        error=f"UnknownTableError: {table_id}",
        failed_at=CAPTURED,
        position=SourcePosition(segment, offset),
        schema_details={"table_id": table_id},
    )


def use_case(world, *sinks, policy=UnknownTablePolicy.COUNT, kept=3):
    return ReplicateBatch(
        source=world["source"],
        schemas=world["schemas"],
        destinations=[Destination(sink, world["offsets"]) for sink in sinks],
        dead_letters=world["dlq"],
        clock=world["clock"],
        masking=MaskingPolicy(),
        history=world["history"],
        unknown_tables=policy,
        unknown_tables_kept=kept,
    )


def fill(world, count, table_id=GONE, segment=1):
    for offset in range(count):
        world["source"].fail(unknown(segment, 10 + offset, table_id))


def kept_in_full(entries):
    return [e for e in entries if e.raw is not None]


async def test_count_keeps_the_first_entries_in_full_and_counts_the_rest(world):
    fill(world, 10)
    fill(world, 2, OTHER, segment=2)
    world["source"].append(event(key=1, columns={"status": "a"}, position=SourcePosition(3, 1)))
    sink = MemorySink("a")
    (outcome,) = await use_case(world, sink)(max_events=100)

    assert outcome.delivered == 1
    stored = await world["dlq"].list()
    assert [e.position.offset for e in kept_in_full(stored)] == [10, 11, 12, 10, 11]
    tallies = {t.table_id: t for t in await stored_tallies(world["dlq"])}
    assert (tallies[GONE].entries, tallies[GONE].kept) == (10, 3)
    assert (tallies[OTHER].entries, tallies[OTHER].kept) == (2, 2)
    assert tallies[GONE].first_position == SourcePosition(1, 10)
    assert tallies[GONE].last_position == SourcePosition(1, 19)
    assert len(stored) == 5 + 2  # five kept in full, one tally per table id


async def test_counts_are_exact_across_destinations_batches_and_restarts(world):
    fill(world, 12)
    first, second = MemorySink("first"), MemorySink("second")
    replicate = use_case(world, first, second)
    for _ in range(4):  # small batches: both destinations read every entry
        await replicate(max_events=5)
    # A restart: a new use case reloads the tallies, and a destination that lost its
    # offset reads everything again.
    await world["offsets"].commit("second", Checkpoint("node1", SourcePosition(0, 0), 0))
    again = use_case(world, first, second)
    for _ in range(4):
        await again(max_events=5)

    (tally,) = await stored_tallies(world["dlq"])
    assert (tally.entries, tally.kept) == (12, 3)
    assert len(kept_in_full(await world["dlq"].list())) == 3


async def test_dead_letter_keeps_every_entry(world):
    fill(world, 6)
    await use_case(world, MemorySink("a"), policy=UnknownTablePolicy.DEAD_LETTER)(max_events=10)
    stored = await world["dlq"].list()
    assert len(kept_in_full(stored)) == 6
    assert await stored_tallies(world["dlq"]) == []


async def test_skip_stores_nothing_and_still_moves_on(world):
    fill(world, 6)
    world["source"].append(event(key=1, columns={"status": "a"}, position=SourcePosition(3, 1)))
    sink = MemorySink("a")
    (outcome,) = await use_case(world, sink, policy=UnknownTablePolicy.SKIP)(max_events=10)
    assert outcome.delivered == 1
    assert await world["dlq"].list() == []
    assert (await world["offsets"].load("a", "node1")).position == SourcePosition(3, 1)


async def test_other_failures_are_untouched_by_the_policy(world):
    world["source"].fail(
        DeadLetterEvent.for_raw(
            b"\x00",
            reason=FailureReason.DECODE_ERROR,
            error="CRC mismatch",
            failed_at=CAPTURED,
            position=SourcePosition(1, 5),
        )
    )
    fill(world, 1)
    await use_case(world, MemorySink("a"), policy=UnknownTablePolicy.SKIP)(max_events=10)
    (decode,) = await world["dlq"].list()
    assert decode.reason is FailureReason.DECODE_ERROR


async def test_tallies_are_kept_per_source_partition(world):
    fill(world, 4)
    await use_case(world, MemorySink("a"))(max_events=10)
    (tally,) = await stored_tallies(world["dlq"], "node1")
    assert tally.entries == 4
    assert await stored_tallies(world["dlq"], "node2") == []


class FlakyQueue(MemoryDeadLetterQueue):
    """A dead letter queue whose next writes fail, as a lost connection does."""

    def __init__(self, fail_next):
        super().__init__()
        self.fail_next = fail_next

    async def write(self, entries):
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError("dead letter queue unavailable")
        await super().write(entries)


async def test_a_tally_whose_write_failed_is_stored_when_the_batch_is_retried(world):
    """The batch is retried in the same process, whose tallies already counted it."""
    world["dlq"] = FlakyQueue(fail_next=1)
    fill(world, 10)
    replicate = use_case(world, MemorySink("a"))
    (failed,) = await replicate(max_events=100)
    assert isinstance(failed.error, TransientError)
    assert await world["offsets"].load("a", "node1") is None
    (retried,) = await replicate(max_events=100)
    assert retried.ok
    (tally,) = await stored_tallies(world["dlq"])
    assert (tally.entries, tally.kept) == (10, 3)
