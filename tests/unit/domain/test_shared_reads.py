"""Destinations reading from the same position share one read of the source, while
that read is still a complete answer."""

import asyncio
import datetime as dt

import pytest

from cdc_adapters.memory import ManualClock, MemoryChangeSource, MemorySink
from cdc_domain.masking import MaskingPolicy, MaskOnce
from cdc_domain.shared_reads import SharedReads
from tests.factories import event
from tests.support.waiting import eventually
from tests.unit.domain.test_replication import replicate


class CountingReads(MemoryChangeSource):
    """The in-memory source, counting reads; ``gate`` holds each read until set."""

    def __init__(self) -> None:
        super().__init__("node1")
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None

    async def read(self, after, max_events):
        self.reads += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return await super().read(after, max_events)


@pytest.fixture
def source():
    return CountingReads()


@pytest.fixture
def clock():
    return ManualClock()


def orders(count, start=1):
    return [event(key=i, ts=i, columns={"status": f"s{i}"}) for i in range(start, start + count)]


def shared(source, clock, masking=None, keep=4):
    policy = MaskOnce(masking or MaskingPolicy())
    return SharedReads(source, policy, clock, keep=keep, fresh_for=dt.timedelta(seconds=0.1))


async def test_a_full_batch_is_read_once_for_every_destination_at_its_position(source, clock):
    source.append(*orders(5))
    reads = shared(source, clock)
    first = await reads.read(None, 3)
    clock.advance(3600)
    again = await reads.read(None, 3)
    assert again is first
    assert first.full
    assert [e.columns["status"] for e in first.masked] == ["s1", "s2", "s3"]
    assert source.reads == 1


async def test_a_batch_that_was_not_full_is_shared_only_while_fresh(source, clock):
    source.append(*orders(2))
    reads = shared(source, clock)
    first = await reads.read(None, 10)
    source.append(*orders(2, start=3))
    clock.advance(0.05)
    assert (await reads.read(None, 10)) is first
    clock.advance(0.1)
    later = await reads.read(None, 10)
    assert len(later.masked) == 4
    assert source.reads == 2


async def test_other_positions_and_sizes_are_read_on_their_own(source, clock):
    batch = orders(6)
    source.append(*batch)
    reads = shared(source, clock)
    await reads.read(None, 3)
    assert len((await reads.read(batch[2].position, 3)).masked) == 3
    assert len((await reads.read(None, 2)).masked) == 2
    assert source.reads == 3


async def test_a_position_inside_a_kept_batch_gets_its_rest_and_then_meets_the_others(
    source, clock
):
    batch = orders(5)
    source.append(*batch)
    reads = shared(source, clock)
    first = await reads.read(None, 10)
    source.append(*orders(2, start=6))
    rest = await reads.read(batch[1].position, 10)
    assert [e.columns["status"] for e in rest.masked] == ["s3", "s4", "s5"]
    assert rest.batch.events == tuple(batch[2:])
    assert rest.batch.end == first.batch.end
    assert source.reads == 1
    clock.advance(1)
    newer = await reads.read(first.batch.end, 10)
    assert (await reads.read(first.batch.end, 10)) is newer
    assert [e.columns["status"] for e in newer.masked] == ["s6", "s7"]
    assert source.reads == 2


async def test_the_rest_of_a_stale_or_full_batch_says_more_is_waiting(source, clock):
    batch = orders(6)
    source.append(*batch)
    reads = shared(source, clock)
    await reads.read(None, 3)
    assert (await reads.read(batch[0].position, 3)).full
    await reads.read(batch[2].position, 10)
    fresh = await reads.read(batch[3].position, 10)
    assert [e.columns["status"] for e in fresh.masked] == ["s5", "s6"]
    assert not fresh.full
    source.append(*orders(1, start=7))
    clock.advance(1)
    stale = await reads.read(batch[4].position, 10)
    assert [e.columns["status"] for e in stale.masked] == ["s6"]
    assert stale.full
    assert source.reads == 2


async def test_destinations_asking_at_once_wait_for_one_read(source, clock):
    source.append(*orders(3))
    reads = shared(source, clock)
    source.gate.clear()
    waiting = [asyncio.create_task(reads.read(None, 3)) for _ in range(3)]
    await eventually(lambda: source.reads == 1)
    source.gate.set()
    first, second, third = await asyncio.gather(*waiting)
    assert first is second is third
    assert source.reads == 1


async def test_a_failed_read_fails_everyone_waiting_and_is_not_kept(source, clock):
    source.append(*orders(3))
    reads = shared(source, clock)
    source.gate.clear()
    source.error = ConnectionError("cdc_raw is gone")
    waiting = [asyncio.create_task(reads.read(None, 3)) for _ in range(2)]
    await eventually(lambda: source.reads == 1)
    source.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    source.error = None
    assert len((await reads.read(None, 3)).masked) == 3
    assert source.reads == 2


async def test_a_cancelled_read_leaves_those_waiting_for_it_to_read_again(source, clock):
    source.append(*orders(3))
    reads = shared(source, clock)
    source.gate.clear()
    first = asyncio.create_task(reads.read(None, 3))
    waiting = [asyncio.create_task(reads.read(None, 3)) for _ in range(2)]
    await eventually(lambda: source.reads == 1)
    first.cancel()
    await eventually(lambda: source.reads == 2)
    source.gate.set()
    second, third = await asyncio.gather(*waiting)
    assert second is third
    assert len(second.masked) == 3
    assert first.cancelled()
    assert source.reads == 2


async def test_nothing_new_is_never_kept(source, clock):
    reads = shared(source, clock)
    assert (await reads.read(None, 3)).batch.end is None
    source.append(*orders(1))
    assert len((await reads.read(None, 3)).masked) == 1


async def test_only_the_latest_batches_are_kept(source, clock):
    batch = orders(8)
    source.append(*batch)
    reads = shared(source, clock, keep=2)
    for after in (None, batch[1].position, batch[3].position):
        await reads.read(after, 2)
    await reads.read(None, 2)
    assert source.reads == 4


async def test_events_the_policy_refuses_to_mask_are_kept_apart_with_why(source, clock):
    source.append(*orders(2))
    policy = MaskingPolicy.from_config(
        {"rules": [{"field": "id", "class": "pii"}], "mask_key_columns": ["shop.orders.id"]},
        hmac_key=None,
    )
    read = await shared(source, clock, masking=policy).read(None, 5)
    assert read.masked == ()
    assert [e.columns["status"] for e, _ in read.refused] == ["s1", "s2"]
    assert all("id" in str(error) for _, error in read.refused)


async def test_the_use_case_reads_once_for_destinations_that_keep_pace(world, source):
    source.append(*orders(4))
    world["source"] = source
    sinks = [MemorySink(name) for name in ("a", "b", "c")]
    outcomes = await replicate(world, *sinks)(max_events=2)
    outcomes += await replicate(world, *sinks)(max_events=2)
    assert [o.delivered for o in outcomes] == [2, 2, 2, 2, 2, 2]
    assert all(len(sink.state.rows("shop.orders")) == 4 for sink in sinks)
    assert source.reads == 2
