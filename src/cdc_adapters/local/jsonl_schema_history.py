from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import json
import os
from pathlib import Path

from cdc_adapters.local.file_stamps import FileStamp, file_stamp
from cdc_adapters.memory.schema_history import latest_schemas
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import AppliedChange, SchemaChange
from cdc_domain.serialization import make_converter


class JsonLinesSchemaHistory:
    """The schema history as a JSON Lines file: one applied change per line, appended."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._converter = make_converter()
        self._changes: list[AppliedChange] | None = None
        self._stamp: FileStamp = None
        self._lock = asyncio.Lock()

    async def applied(self, destination: str) -> dict[str, TableSchema]:
        return latest_schemas(await self._load(), destination)

    async def record(self, destination: str, change: SchemaChange, applied_at: dt.datetime) -> None:
        entry = AppliedChange(destination, change, applied_at)
        line = json.dumps(self._converter.unstructure(entry), ensure_ascii=False)
        async with self._lock:
            changes = await self._load_locked()
            self._stamp = await asyncio.to_thread(self._append, line)
            changes.append(entry)

    async def changes(self, destination: str | None = None) -> builtins.list[AppliedChange]:
        return [
            c for c in await self._load() if destination is None or c.destination == destination
        ]

    async def aclose(self) -> None:
        return None

    async def _load(self) -> list[AppliedChange]:
        async with self._lock:
            return list(await self._load_locked())

    async def _load_locked(self) -> list[AppliedChange]:
        """The history, re-read when another process (``schema accept``) appended to it."""
        stamp = await asyncio.to_thread(file_stamp, self._path)
        if self._changes is None or stamp != self._stamp:
            self._changes = await asyncio.to_thread(self._read)
            self._stamp = stamp
        return self._changes

    def _read(self) -> list[AppliedChange]:
        if not self._path.exists():
            return []
        lines = self._path.read_text(encoding="utf-8").split("\n")
        return [
            self._converter.structure(json.loads(line), AppliedChange)
            for line in lines[:-1]
            if line.strip()
        ]

    def _append(self, line: str) -> FileStamp:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return file_stamp(self._path)
