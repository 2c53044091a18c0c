from __future__ import annotations

import asyncio
import builtins
import json
import os
from collections.abc import Sequence
from pathlib import Path

import attrs

from cdc_adapters.local.file_stamps import FileStamp, file_stamp
from cdc_domain.dead_letters import (
    DeadLetterEvent,
    DeadLetterStatus,
    FailureReason,
    select_dead_letters,
)
from cdc_domain.serialization import make_converter


class JsonLinesDeadLetterQueue:
    """Dead letters in a JSON Lines file, one entry per line, appended only.

    A later line with the same ``dlq_id`` supersedes an earlier one (that is how a
    replay marks an entry), so the file is also the audit trail of what happened.
    """

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._converter = make_converter()
        self._entries: dict[str, DeadLetterEvent] | None = None
        self._stamp: FileStamp = None
        self._lock = asyncio.Lock()

    async def write(self, entries: Sequence[DeadLetterEvent]) -> None:
        async with self._lock:
            current = await self._load()
            changed = [e for e in entries if current.get(e.dlq_id) != e]
            await self._append(changed)

    async def list(
        self,
        *,
        destination: str | None = None,
        reason: FailureReason | None = None,
        include_replayed: bool = False,
        limit: int | None = None,
    ) -> builtins.list[DeadLetterEvent]:
        async with self._lock:
            current = await self._load()
        return select_dead_letters(
            current.values(),
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
        async with self._lock:
            current = await self._load()
            updated = [
                attrs.evolve(current[i], status=DeadLetterStatus.REPLAYED)
                for i in dlq_ids
                if i in current and current[i].status is not DeadLetterStatus.REPLAYED
            ]
            await self._append(updated)

    async def aclose(self) -> None:
        return None

    async def _load(self) -> dict[str, DeadLetterEvent]:
        """The entries, re-read when another process (``dlq replay``) changed the file."""
        stamp = await asyncio.to_thread(file_stamp, self._path)
        if self._entries is None or stamp != self._stamp:
            self._entries = await asyncio.to_thread(self._read)
            self._stamp = stamp
        return self._entries

    async def _append(self, entries: builtins.list[DeadLetterEvent]) -> None:
        if not entries:
            return
        lines = [json.dumps(self._converter.unstructure(e), ensure_ascii=False) for e in entries]
        self._stamp = await asyncio.to_thread(self._write_lines, lines)
        assert self._entries is not None
        for entry in entries:
            self._entries[entry.dlq_id] = entry

    def _read(self) -> dict[str, DeadLetterEvent]:
        entries: dict[str, DeadLetterEvent] = {}
        if not self._path.exists():
            return entries
        lines = self._path.read_text(encoding="utf-8").split("\n")
        for line in lines[:-1]:
            if line.strip():
                entry = self._converter.structure(json.loads(line), DeadLetterEvent)
                entries[entry.dlq_id] = entry
        return entries

    def _write_lines(self, lines: builtins.list[str]) -> FileStamp:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        return file_stamp(self._path)
