"""One read of the source, masked once, for every destination that asks for it.

Each destination reads from its own committed position (ADR 0002), and while they keep
pace they ask for the same batch: the same position, the same size. Reading it anew for
each meant scanning the source's entries, matching each event to its position and
looking up its masked copy three times over, a fifth of the agent's CPU per event on
the end-to-end bench. A destination now gets the batch another one read from the same
position with the same size, when that batch is still a complete answer:

* a full batch (as many events and failures as were asked for) is the same whenever it
  is read: the source is append-only and a batch is everything after its position, in
  order, up to its end;
* one that was not full ended where the durable data ended at the time; it stays
  correct (nothing after its position is skipped, its end is exact) but may miss what
  arrived since, so it is shared only while ``fresh_for`` has not passed, a delay no
  bigger than the batching delay a destination already accepts.

Once a non-full batch ended at one destination's position and not another's, their
positions would never meet again: each read ends where the data ended at its moment. So
a destination whose position lies inside a kept batch gets that batch's rest
(everything after its position, up to the batch's end), however old: it is as correct
as a read of its own, and its next read starts where the others' did. When that batch
was full, or is no longer fresh, the rest is marked ``full`` (more is waiting), so the
destination reads again at once instead of after its batching delay.

A destination that lags further back than the kept batches reads on its own, as before,
and is never waited for. Two destinations asking at once wait for one read. At most
``keep`` batches are held (the newest), so memory stays bounded by batches, not by the
backlog.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
from collections import OrderedDict

import attrs

from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.masking import MaskingConfigError, MaskOnce
from cdc_domain.ports import ChangeBatch, ChangeSource, Clock
from cdc_domain.routing import mask_apart

__all__ = ["ReadBatch", "SharedReads"]

_Key = tuple[SourcePosition | None, int]


@attrs.frozen(slots=True)
class ReadBatch:
    """A batch as every destination needs it: the source's batch, its events masked
    (those the policy refused to mask kept apart, with why), and when it was read."""

    batch: ChangeBatch
    masked: tuple[ChangeEvent, ...]
    refused: tuple[tuple[ChangeEvent, MaskingConfigError], ...]
    read_at: dt.datetime
    full: bool

    def since(self, position: SourcePosition, *, more: bool) -> ReadBatch:
        """What of this batch lies after ``position`` (which it covers), as a batch
        read from there; ``full`` when ``more`` may be waiting past its end."""
        batch = self.batch
        events = batch.events[bisect.bisect_right(batch.events, position, key=_position) :]
        failures = tuple(
            f for f in batch.failures if f.position is not None and f.position > position
        )
        masked = self.masked[bisect.bisect_right(self.masked, position, key=_position) :]
        refused = tuple(r for r in self.refused if r[0].position > position)
        rest = ChangeBatch(events, failures, batch.end, batch.schemas)
        return ReadBatch(rest, masked, refused, self.read_at, full=more)


def _position(event: ChangeEvent) -> SourcePosition:
    return event.position


class SharedReads:
    def __init__(
        self,
        source: ChangeSource,
        masking: MaskOnce,
        clock: Clock,
        *,
        keep: int = 8,
        fresh_for: dt.timedelta = dt.timedelta(milliseconds=100),
    ) -> None:
        self._source = source
        self._masking = masking
        self._clock = clock
        self._keep = keep
        self._fresh_for = fresh_for
        self._recent: OrderedDict[_Key, ReadBatch] = OrderedDict()
        self._reading: dict[_Key, asyncio.Future[ReadBatch]] = {}

    async def read(self, after: SourcePosition | None, max_events: int) -> ReadBatch:
        key = (after, max_events)
        held = self._recent.get(key)
        if held is not None and (held.full or self._fresh(held)):
            return held
        if after is not None:
            covering = self._covering(after, max_events)
            if covering is not None:
                return covering.since(after, more=covering.full or not self._fresh(covering))
        pending = self._reading.get(key)
        if pending is not None:
            await asyncio.wait([pending])
            if not pending.cancelled():
                return pending.result()  # the read's result, or its error
            # Its reader was cancelled (a stop abandoning that batch): ask again.
            return await self.read(after, max_events)
        reading = asyncio.get_running_loop().create_future()
        self._reading[key] = reading
        try:
            found = await self._read(after, max_events)
        except asyncio.CancelledError:
            reading.cancel()
            raise
        except BaseException as exc:
            reading.set_exception(exc)
            reading.exception()  # retrieved: only the waiters, if any, re-raise it
            raise
        else:
            reading.set_result(found)
        finally:
            if self._reading.get(key) is reading:
                del self._reading[key]
        if found.batch.end is not None:
            self._recent[key] = found
            self._recent.move_to_end(key)
            while len(self._recent) > self._keep:
                self._recent.popitem(last=False)
        return found

    def _fresh(self, held: ReadBatch) -> bool:
        return self._clock.now() - held.read_at <= self._fresh_for

    def _covering(self, after: SourcePosition, max_events: int) -> ReadBatch | None:
        """A batch of the same size that began before ``after`` and ends past it."""
        for (start, size), held in reversed(self._recent.items()):
            end = held.batch.end
            if (
                size == max_events
                and end is not None
                and (start is None or start < after)
                and after < end
            ):
                return held
        return None

    async def _read(self, after: SourcePosition | None, max_events: int) -> ReadBatch:
        read_at = self._clock.now()
        batch = await self._source.read(after, max_events)
        masked, refused = mask_apart(batch.events, self._masking)
        full = len(batch.events) + len(batch.failures) >= max_events
        return ReadBatch(batch, tuple(masked), tuple(refused), read_at, full)
