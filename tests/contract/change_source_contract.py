"""The ChangeSource contract. Subclasses provide ``change_source`` and two async functions:
``produce(count)`` makes the underlying system emit ``count`` new changes (one per row)
and returns once they are durable at the source; ``produce_freeable()`` emits changes the
source can free once they are acknowledged (a commit log: changes in a segment its node
has completed, not only in the one it is still writing) and returns once they are
durable."""

from __future__ import annotations

from cdc_domain.ports import ChangeSource


async def read_all(source, after=None, batch=1000, rounds=50):
    events = []
    for _ in range(rounds):
        result = await source.read(after, batch)
        if result.end is None or result.end == after:
            break
        events.extend(result.events)
        after = result.end
    return events, after


class ChangeSourceContract:
    async def test_is_a_change_source(self, change_source):
        assert isinstance(change_source, ChangeSource)
        assert change_source.partition_id

    async def test_reads_what_was_produced_in_position_order(self, change_source, produce):
        await produce(5)
        events, end = await read_all(change_source)
        assert len(events) >= 5
        positions = [e.position for e in events]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        assert end >= positions[-1]

    async def test_reading_after_a_position_never_repeats_it(self, change_source, produce):
        await produce(6)
        first = await change_source.read(None, 3)
        rest, _ = await read_all(change_source, first.end)
        assert all(e.position > first.end for e in rest)
        assert len(first.events) + len(rest) >= 6

    async def test_reads_are_bounded(self, change_source, produce):
        await produce(5)
        result = await change_source.read(None, 2)
        assert len(result.events) <= 2

    async def test_nothing_new_returns_no_events(self, change_source, produce):
        await produce(1)
        _, end = await read_all(change_source)
        result = await change_source.read(end, 10)
        assert result.events == ()

    async def test_acknowledging_frees_what_it_covers_and_nothing_after(
        self, change_source, produce_freeable
    ):
        await produce_freeable()
        held, end = await read_all(change_source)
        assert held

        middle = held[len(held) // 2].position
        await change_source.acknowledge(middle)
        readable, _ = await read_all(change_source)
        still_needed = {e.event_id for e in held if e.position > middle}
        assert still_needed <= {e.event_id for e in readable}, "freed past the position"

        await change_source.acknowledge(end)
        readable, _ = await read_all(change_source)
        kept = {e.event_id for e in readable}
        freed = [e for e in held if e.event_id not in kept]
        assert freed, "acknowledging everything read freed none of it"
        # What is freed is a prefix: a source never frees a change and keeps an older one.
        assert all(e.event_id not in kept for e in held if e.position <= freed[-1].position)
