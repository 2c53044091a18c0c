"""The DeadLetterQueue contract. Subclasses provide ``dead_letter_queue`` (fresh and
empty) and ``reopen`` (a new queue over the same storage, or the same queue)."""

from __future__ import annotations

import datetime as dt

from cdc_domain.dead_letters import DeadLetterEvent, DeadLetterStatus, FailureReason
from cdc_domain.events import SourcePosition
from cdc_domain.ports import DeadLetterQueue
from tests.factories import event

FAILED_AT = dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.UTC)


def dead(key, reason=FailureReason.SCHEMA_INCOMPATIBLE, destination="pg"):
    return DeadLetterEvent.for_event(
        event(key=key, columns={"status": "x", "amount": 2**60}),
        reason=reason,
        error=f"problem {key}",
        failed_at=FAILED_AT,
        destination=destination,
        schema_details={"table": "shop.orders", "columns": [{"column": "hits"}]},
    )


class DeadLetterQueueContract:
    async def test_is_a_dead_letter_queue(self, dead_letter_queue):
        assert isinstance(dead_letter_queue, DeadLetterQueue)

    async def test_written_entries_come_back_whole(self, dead_letter_queue):
        entry = dead(1)
        await dead_letter_queue.write([entry])
        assert await dead_letter_queue.list() == [entry]

    async def test_raw_entries_without_an_event_are_kept(self, dead_letter_queue):
        entry = DeadLetterEvent.for_raw(
            b"\x00\xffbad",
            reason=FailureReason.DECODE_ERROR,
            error="CRC mismatch at 1:120",
            failed_at=FAILED_AT,
            position=SourcePosition(1, 120),
        )
        await dead_letter_queue.write([entry])
        (back,) = await dead_letter_queue.list()
        assert back == entry

    async def test_writing_the_same_entry_twice_stores_it_once(self, dead_letter_queue):
        entry = dead(1)
        await dead_letter_queue.write([entry])
        await dead_letter_queue.write([entry])
        assert len(await dead_letter_queue.list()) == 1

    async def test_list_filters_by_destination_and_reason(self, dead_letter_queue):
        entries = [
            dead(1),
            dead(2, reason=FailureReason.PROCESSING_ERROR),
            dead(3, destination="ch"),
        ]
        await dead_letter_queue.write(entries)
        by_destination = await dead_letter_queue.list(destination="pg")
        assert {e.dlq_id for e in by_destination} == {entries[0].dlq_id, entries[1].dlq_id}
        by_reason = await dead_letter_queue.list(reason=FailureReason.PROCESSING_ERROR)
        assert [e.dlq_id for e in by_reason] == [entries[1].dlq_id]
        assert len(await dead_letter_queue.list(limit=2)) == 2

    async def test_replay_takes_pending_entries_until_marked(self, dead_letter_queue):
        entries = [dead(1), dead(2)]
        await dead_letter_queue.write(entries)
        taken = await dead_letter_queue.take_for_replay(destination="pg")
        assert {e.dlq_id for e in taken} == {e.dlq_id for e in entries}
        await dead_letter_queue.mark_replayed([entries[0].dlq_id])
        await dead_letter_queue.mark_replayed([entries[0].dlq_id])
        remaining = await dead_letter_queue.take_for_replay()
        assert [e.dlq_id for e in remaining] == [entries[1].dlq_id]
        everything = await dead_letter_queue.list(include_replayed=True)
        statuses = {e.dlq_id: e.status for e in everything}
        assert statuses[entries[0].dlq_id] is DeadLetterStatus.REPLAYED

    async def test_entries_survive_a_reopen(self, dead_letter_queue, reopen):
        entry = dead(1)
        await dead_letter_queue.write([entry])
        await dead_letter_queue.mark_replayed([entry.dlq_id])
        await dead_letter_queue.aclose()
        again = await reopen()
        (back,) = await again.list(include_replayed=True)
        assert back.status is DeadLetterStatus.REPLAYED
