from __future__ import annotations

import builtins
from collections.abc import Sequence

import attrs

from cdc_domain.dead_letters import (
    DeadLetterEvent,
    DeadLetterStatus,
    FailureReason,
    select_dead_letters,
)


class MemoryDeadLetterQueue:
    def __init__(self) -> None:
        self._entries: dict[str, DeadLetterEvent] = {}

    async def write(self, entries: Sequence[DeadLetterEvent]) -> None:
        for entry in entries:
            self._entries[entry.dlq_id] = entry

    async def list(
        self,
        *,
        destination: str | None = None,
        reason: FailureReason | None = None,
        include_replayed: bool = False,
        limit: int | None = None,
    ) -> builtins.list[DeadLetterEvent]:
        return select_dead_letters(
            self._entries.values(),
            destination=destination,
            reason=reason,
            include_replayed=include_replayed,
            limit=limit,
        )

    async def take_for_replay(
        self,
        *,
        destination: str | None = None,
        reason: FailureReason | None = None,
        limit: int | None = None,
    ) -> builtins.list[DeadLetterEvent]:
        return await self.list(destination=destination, reason=reason, limit=limit)

    async def mark_replayed(self, dlq_ids: Sequence[str]) -> None:
        for dlq_id in dlq_ids:
            entry = self._entries.get(dlq_id)
            if entry is not None:
                self._entries[dlq_id] = attrs.evolve(entry, status=DeadLetterStatus.REPLAYED)

    async def aclose(self) -> None:
        return None
