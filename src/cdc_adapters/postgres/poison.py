"""Finding the events a database rejects, so only they are dead-lettered.

A batch fails as a whole; trial writes of halves (rolled back, never committed) narrow
the failure down to single events in O(k log n) trials for k bad events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from cdc_domain.errors import SinkError
from cdc_domain.events import ChangeEvent

__all__ = ["find_poison"]


async def find_poison(
    events: Sequence[ChangeEvent], fails: Callable[[Sequence[ChangeEvent]], Awaitable[bool]]
) -> list[str]:
    """Ids of the events for which ``fails`` (a rolled-back trial write) is true alone."""
    bad: list[str] = []

    async def search(subset: Sequence[ChangeEvent]) -> None:
        if not subset or not await fails(subset):
            return
        if len(subset) == 1:
            bad.append(subset[0].event_id)
            return
        middle = len(subset) // 2
        await search(subset[:middle])
        await search(subset[middle:])

    await search(events)
    if not bad:
        raise SinkError("the batch fails as a whole but no event fails alone")
    return bad
