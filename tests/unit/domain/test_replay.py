"""Dead letter replay goes through the use case: schema evolution, validation, and the
same split of poison from the rest as a batch."""

from cdc_adapters.memory import MemorySink
from cdc_domain.dead_letters import DeadLetterEvent, DeadLetterStatus, FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import TransientError
from cdc_domain.masking import MaskingPolicy
from cdc_domain.replication import Destination, ReplicateBatch
from cdc_domain.schema_changes import ChangeKind
from tests.factories import CAPTURED, event
from tests.unit.domain.test_replication import RejectingSink


def use_case(world, *sinks):
    return ReplicateBatch(
        source=world["source"],
        schemas=world["schemas"],
        destinations=[Destination(sink, world["offsets"]) for sink in sinks],
        dead_letters=world["dlq"],
        clock=world["clock"],
        masking=MaskingPolicy(),
        history=world["history"],
    )


def letter(key, destination="pg", reason=FailureReason.PROCESSING_ERROR, **columns):
    return DeadLetterEvent.for_event(
        event(key=key, columns=columns or {"status": f"s{key}"}),
        reason=reason,
        error="it failed once",
        failed_at=CAPTURED,
        destination=destination,
    )


async def test_replay_creates_the_table_first_when_the_destination_never_had_it(world):
    sink = MemorySink("pg", DestinationKind.POSTGRES)
    await world["dlq"].write([letter(1), letter(2)])

    report = await use_case(world, sink).replay()

    assert (report.replayed, report.failed, report.skipped) == (2, (), ())
    assert [c.kind for c in sink.applied_changes] == [ChangeKind.CREATE_TABLE]
    assert [c.change.kind for c in await world["history"].changes("pg")] == [
        ChangeKind.CREATE_TABLE
    ]
    assert len(sink.state.rows("shop.orders")) == 2
    assert await world["dlq"].list() == []


async def test_a_poison_event_fails_again_alone_and_the_rest_is_replayed(world):
    sink = RejectingSink("pg", reject={"bad"})
    good, bad = letter(1), letter(2, status="bad")
    await world["dlq"].write([good, bad])

    report = await use_case(world, sink).replay()

    assert report.replayed == 1
    (again,) = report.failed
    assert (again.dlq_id, again.retry_count, again.error) == (bad.dlq_id, 1, "value out of range")
    (pending,) = await world["dlq"].list()
    assert pending.dlq_id == bad.dlq_id
    assert pending.status is DeadLetterStatus.PENDING
    assert list(sink.state.rows("shop.orders")) == [((1,), ())]


async def test_an_unreachable_destination_leaves_its_entries_pending_with_the_error(world):
    down, up = MemorySink("down"), MemorySink("up")
    down.fail_next = 1
    await world["dlq"].write([letter(1, "down"), letter(2, "up")])

    report = await use_case(world, down, up).replay()

    assert report.replayed == 1
    (again,) = report.failed
    assert again.destination == "down"
    assert again.error == f"{TransientError.__name__}: down is unavailable"
    assert len(up.state.rows("shop.orders")) == 1


async def test_entries_it_cannot_replay_are_skipped_with_why(world):
    await world["dlq"].write([letter(1, "gone"), letter(2, reason=FailureReason.MASKING_ERROR)])
    report = await use_case(world, MemorySink("pg")).replay()
    assert report.replayed == 0
    assert [s["why"] for s in report.to_json()["skipped"]] == [
        "destination 'gone' is not configured",
        "stored redacted: the masking rules could not mask it",
    ]
