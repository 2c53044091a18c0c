"""A writer killed at random points, restarted from its committed offset, until the
stream is delivered: shared by the PostgreSQL and TimescaleDB crash tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from cdc_domain.errors import TransientError
from cdc_domain.events import ChangeEvent, DeletionScope, Operation
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import OffsetStore, SinkBatch
from tests.integration.postgres.mirror_model import ITEMS, ev, range_delete

DESTINATION = "crashy"
PARTITION = "n1"


def stream(count: int, seed: int) -> list[ChangeEvent]:
    """Mixed changes over a few partitions, timestamps shuffled (out of order)."""
    rng = random.Random(seed)
    stamps = list(range(100, 100 + count))
    rng.shuffle(stamps)
    events = []
    for ts in stamps:
        pk, ck = rng.randint(1, 4), rng.choice([(1, "a"), (1, "b"), (2, "a")])
        kind = rng.random()
        if kind < 0.6:
            events.append(ev(Operation.UPDATE, pk, ck, ts, columns={"a": f"v{ts}", "b": ts}))
        elif kind < 0.8:
            events.append(ev(Operation.DELETE, pk, ck, ts))
        elif kind < 0.9:
            events.append(ev(Operation.UPDATE, pk, None, ts, columns={"s": f"s{ts}"}, static=True))
        elif kind < 0.95:
            events.append(ev(Operation.DELETE, pk, None, ts, scope=DeletionScope.PARTITION))
        else:
            events.append(range_delete(pk, ts, {"c1": 1}, {"c1": 1}))
    return events


def batches(events: list[ChangeEvent], size: int) -> list[SinkBatch]:
    return [
        SinkBatch(
            tuple(events[i : i + size]),
            {ITEMS.qualified_name: ITEMS},
            Checkpoint(PARTITION, events[i : i + size][-1].position, len(events[i : i + size])),
        )
        for i in range(0, len(events), size)
    ]


@attrs.define
class Round:
    """One writer's life: its sink, the offset store to resume from, how it is killed
    (default: the task is cancelled) and what to release after it."""

    sink: Any
    offsets: OffsetStore
    kill: Callable[[asyncio.Task[None]], None] = lambda task: task.cancel()
    close: Callable[[], Awaitable[None]] | None = None


class _Writer:
    """Writes its batches one after the other and knows whether it is inside a write."""

    def __init__(self, sink: Any, pending: list[SinkBatch]) -> None:
        self.sink = sink
        self.pending = pending
        self.writing = False

    async def run(self) -> None:
        for item in self.pending:
            self.writing = True
            try:
                await self.sink.write(item)
            finally:
                self.writing = False


async def deliver_with_crashes(
    new_round: Callable[[], Awaitable[Round]],
    events: list[ChangeEvent],
    *,
    size: int,
    seed: int,
    check: Callable[[Any, int], Awaitable[None]],
    max_kill_delay: float = 0.05,
) -> int:
    """Deliver ``events``; each round's writer is killed after a random delay and the
    next resumes from the committed offset. After every round ``check(sink, n)``
    verifies the destination holds exactly the first ``n`` events (n from the offset).
    Returns how many writers were killed inside a write.

    Progress is guaranteed on any machine: the delay is ``rng.uniform(0, max_kill_delay)``
    on top of a floor that doubles after a round that committed nothing and halves after
    one that did. Once the floor exceeds the time a fresh writer needs to commit its first
    batch a round commits, and halving leaves at least half that time, so at most every
    other round stalls; where writers are fast the floor falls back and kills land early.
    A writer that was no longer inside a write when its time came is not killed, and not
    counted as a crash."""
    rng = random.Random(seed)
    plan = batches(events, size)
    crashes = 0
    floor = 0.0
    while True:
        current = await new_round()
        sink, offsets = current.sink, current.offsets
        record = await offsets.load(DESTINATION, PARTITION)
        todo = [b for b in plan if b.events[0].position > record.position] if record else plan
        finished = not todo
        if todo:
            before = record.position if record else None
            writer = _Writer(sink, todo)
            task = asyncio.create_task(writer.run())
            await asyncio.sleep(floor + rng.uniform(0, max_kill_delay))
            if writer.writing:
                current.kill(task)
                crashes += 1
            # A writer whose connection was dropped may die of that before the cancel.
            with contextlib.suppress(asyncio.CancelledError, TransientError):
                await task
            if current.close is not None:
                await current.close()
                current = await new_round()
                sink, offsets = current.sink, current.offsets
            record = await offsets.load(DESTINATION, PARTITION)
            stalled = (record.position if record else None) == before
            floor = max(2 * floor, max_kill_delay) if stalled else floor / 2
        await check(sink, record.events_processed if record else 0)
        await sink.aclose()
        if current.close is not None:
            await current.close()
        if finished:
            return crashes
