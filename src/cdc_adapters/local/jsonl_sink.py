from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import IO

from cdc_domain.destinations import DestinationKind
from cdc_domain.events import SourcePosition
from cdc_domain.health import HealthReport, HealthStatus
from cdc_domain.ports import SinkBatch
from cdc_domain.schema_changes import SchemaChange
from cdc_domain.serialization import make_converter


class JsonLinesSink:
    """Appends one JSON object per change event to a file, or to stdout for ``-``.

    A file is append-only, so idempotence comes from positions: on its first write the
    sink reads the position of the file's last event and skips anything at or before
    it, which is exactly what a restart re-delivers. Stdout cannot be read back, so
    there re-delivery after a crash can repeat lines (at-least-once). Snapshot events
    (:attr:`~cdc_domain.events.ChangeEvent.is_snapshot`) have positions of their own,
    outside the stream's order: they are always appended and leave the stream's last
    position alone, so a snapshot range read again after a crash is in the file twice.
    Schema changes are written as lines of their own (``"type": "schema_change"``).
    """

    def __init__(self, path: str, name: str = "jsonl") -> None:
        self._path = path
        self._name = name
        self._converter = make_converter()
        self._last: SourcePosition | None = None
        self._loaded = path == "-"
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> DestinationKind:
        return DestinationKind.FILE

    @property
    def commits_offsets(self) -> bool:
        return False

    async def write(self, batch: SinkBatch) -> None:
        async with self._lock:
            if not self._loaded:
                self._last = await asyncio.to_thread(self._last_position)
                self._loaded = True
            last = self._last
            events = [e for e in batch.events if e.is_snapshot or last is None or e.position > last]
            if not events:
                return
            lines = [json.dumps(self._converter.unstructure(e), ensure_ascii=False) for e in events]
            await asyncio.to_thread(self._append, lines)
            streamed = [e.position for e in events if not e.is_snapshot]
            if streamed:
                self._last = streamed[-1]

    async def apply_schema_change(self, change: SchemaChange) -> None:
        change.require_compatible(self.kind, self._name)
        record = {"type": "schema_change", **self._converter.unstructure(change)}
        async with self._lock:
            await asyncio.to_thread(self._append, [json.dumps(record, ensure_ascii=False)])

    async def health(self) -> HealthReport:
        if self._path == "-":
            return HealthReport(self._name, HealthStatus.UP, 0.0)
        directory = await asyncio.to_thread(lambda: Path(self._path).absolute().parent)
        if await asyncio.to_thread(os.access, directory, os.W_OK):
            return HealthReport(self._name, HealthStatus.UP, 0.0)
        return HealthReport(self._name, HealthStatus.DOWN, None, f"{directory} is not writable")

    async def aclose(self) -> None:
        return None

    def _append(self, lines: list[str]) -> None:
        text = "".join(line + "\n" for line in lines)
        if self._path == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def _last_position(self) -> SourcePosition | None:
        path = Path(self._path)
        if not path.exists():
            return None
        last = None
        with path.open(encoding="utf-8") as handle:
            for line in _complete_lines(handle):
                record = json.loads(line)
                if "position" in record and record.get("type") != "schema_change":
                    position = self._converter.structure(record["position"], SourcePosition)
                    if position.snapshot is None:
                        last = position
        return last


def _complete_lines(handle: IO[str]) -> list[str]:
    """Lines that were written whole; a crash can leave a torn last line behind."""
    lines = handle.read().split("\n")
    return [line for line in lines[:-1] if line.strip()]
