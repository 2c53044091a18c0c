"""The long-running pipeline: independent destinations, batching, bounded memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from dependency_injector import providers

from cdc_adapters.memory import MemoryChangeSource, MemorySink
from cdc_app.container import running
from cdc_app.runner import Runner
from cdc_domain.events import SourcePosition
from cdc_domain.ports import ChangeBatch, SinkBatch
from cdc_domain.replication import DeliveryOutcome
from tests.factories import event
from tests.support.waiting import eventually
from tests.unit.app.wiring import LOG, MemoryWiring, written

FAST_RETRIES = {"retry_initial_ms": 10, "retry_max_ms": 20}


def customers(count: int, start: int = 0) -> list:
    return [
        event(table="customers", key=start + i, columns={"name": f"n{i}"}, ts=1_000 + i)
        for i in range(count)
    ]


@contextlib.asynccontextmanager
async def pipeline(wiring: MemoryWiring) -> AsyncIterator[tuple[asyncio.Event, dict]]:
    """The runner going in the background; stopped (and checked clean) on the way out."""
    stop = asyncio.Event()
    async with running(wiring.container) as components:
        task = asyncio.create_task(wiring.runner(components).run(stop))
        try:
            yield stop, components.progress
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) is True


async def test_a_failing_destination_blocks_no_other_and_catches_up_afterwards():
    fast, flaky = MemorySink("fast"), MemorySink("flaky")
    flaky.fail_next = 1_000_000
    wiring = MemoryWiring(
        [fast, flaky], pipeline={"max_batch_events": 10, "max_batch_delay_ms": 5, **FAST_RETRIES}
    )
    wiring.source.append(*customers(30))

    async with pipeline(wiring) as (_, progress):
        await eventually(lambda: len(written(fast)) == 30)
        await eventually(lambda: progress["flaky"].consecutive_failures >= 3)
        assert written(flaky) == []
        assert await wiring.offsets.load("flaky", "node1") is None
        assert wiring.source.acknowledged is None  # flaky still needs everything

        flaky.fail_next = 0
        await eventually(lambda: len(written(flaky)) == 30)
        await eventually(lambda: wiring.source.acknowledged is not None)

    assert written(flaky) == written(fast) == list(range(30))
    assert progress["flaky"].consecutive_failures == 0
    assert progress["flaky"].caught_up
    assert wiring.source.acknowledged == (await wiring.offsets.load("flaky", "node1")).position


async def test_a_flood_goes_through_in_full_batches_without_waiting():
    sink = MemorySink("mirror")
    hour = 3_600_000
    wiring = MemoryWiring([sink], pipeline={"max_batch_events": 10, "max_batch_delay_ms": hour})
    wiring.source.append(*customers(95))

    async with pipeline(wiring):
        # Any wait for the delay after a full batch would outlast this by far.
        await eventually(lambda: len(written(sink)) == 95, within=60)

    assert [len(batch.events) for batch in sink.batches] == [10] * 9 + [5]


async def test_a_trickle_is_delivered_within_the_delay_in_one_batch():
    sink = MemorySink("mirror")
    # Long beside the trickle's 50 ms, so all of it arrives while the loop waits.
    wiring = MemoryWiring([sink], pipeline={"max_batch_events": 100, "max_batch_delay_ms": 1000})

    async with pipeline(wiring) as (_, progress):
        await eventually(lambda: progress["mirror"].batches >= 1)  # found nothing, waits
        for trickled in customers(5):
            wiring.source.append(trickled)
            await asyncio.sleep(0.01)
        await eventually(lambda: len(written(sink)) == 5)
        # Delivered by the first read after the delay: the empty batch, then this one.
        assert progress["mirror"].batches == 2

    assert [len(batch.events) for batch in sink.batches] == [5]


class CountingHeld:
    """A source and sink pair that counts events read and not yet handed to a write."""

    def __init__(self, source: MemoryChangeSource) -> None:
        self.source = source
        self.held = 0
        self.most_held = 0
        self.largest_read = 0

    @property
    def partition_id(self) -> str:
        return self.source.partition_id

    async def read(self, after: SourcePosition | None, max_events: int) -> ChangeBatch:
        batch = await self.source.read(after, max_events)
        self.held += len(batch.events)
        self.most_held = max(self.most_held, self.held)
        self.largest_read = max(self.largest_read, len(batch.events))
        return batch

    async def acknowledge(self, position: SourcePosition) -> None:
        await self.source.acknowledge(position)

    async def aclose(self) -> None:
        await self.source.aclose()

    def released(self, count: int) -> None:
        self.held -= count


class SlowSink(MemorySink):
    def __init__(self, name: str, held: CountingHeld, seconds: float) -> None:
        super().__init__(name)
        self.held = held
        self.seconds = seconds

    async def write(self, batch: SinkBatch) -> None:
        try:
            await asyncio.sleep(self.seconds)
            await super().write(batch)
        finally:
            self.held.released(len(batch.events))


async def test_memory_stays_bounded_however_far_a_destination_lags():
    max_events = 50
    counting = CountingHeld(MemoryChangeSource("node1", customers(5_000)))
    fast, slow = SlowSink("fast", counting, 0), SlowSink("slow", counting, 0.02)
    wiring = MemoryWiring(
        [fast, slow], pipeline={"max_batch_events": max_events, "max_batch_delay_ms": 5}
    )
    wiring.container.source.override(providers.Object(counting))

    async with pipeline(wiring):
        await eventually(lambda: len(written(fast)) == 5_000, within=30)
        behind = 5_000 - len(written(slow))

    assert behind > 4_000  # the slow one is far behind ...
    assert counting.largest_read <= max_events  # ... yet nothing reads more than a batch
    assert counting.most_held <= max_events * 2  # one batch in hand per destination


class ScriptedReplicate:
    """A use case whose batches say what the test tells them: here, a small batch that
    is the rest of an older read, so more waits past its end."""

    def __init__(self) -> None:
        self.calls = 0

    async def deliver(self, destination, max_events):
        self.calls += 1
        return DeliveryOutcome(destination.name, delivered=1, more=self.calls == 1)

    async def acknowledge(self):
        return None


async def test_a_batch_that_ended_before_the_data_is_followed_at_once():
    sink = MemorySink("mirror")
    hour = 3_600_000
    wiring = MemoryWiring([sink], pipeline={"max_batch_events": 100, "max_batch_delay_ms": hour})
    scripted = ScriptedReplicate()
    stop = asyncio.Event()
    async with running(wiring.container) as components:
        runner = Runner(
            replicate=scripted,
            destinations=components.destinations,
            progress=components.progress,
            metrics=components.metrics,
            pipeline=wiring.settings.pipeline,
            log=LOG,
        )
        task = asyncio.create_task(runner.run(stop))
        # The second batch comes at once; a third would wait for the hour-long delay.
        await eventually(lambda: scripted.calls == 2, within=30)
        stop.set()
        assert await asyncio.wait_for(task, 10) is True
    assert scripted.calls == 2
