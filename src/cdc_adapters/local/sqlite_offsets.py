from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import sqlite3
from pathlib import Path

from cdc_domain.events import SourcePosition
from cdc_domain.offsets import Checkpoint, OffsetRecord
from cdc_domain.ports import Clock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cdc_offsets (
    destination TEXT NOT NULL,
    partition_id TEXT NOT NULL,
    segment_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    event_index INTEGER NOT NULL,
    snapshot TEXT,
    events_processed INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (destination, partition_id)
)
"""

_UPSERT = """
INSERT INTO cdc_offsets (destination, partition_id, segment_id, position, event_index,
    snapshot, events_processed, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (destination, partition_id) DO UPDATE SET
    segment_id = excluded.segment_id,
    position = excluded.position,
    event_index = excluded.event_index,
    snapshot = excluded.snapshot,
    events_processed = cdc_offsets.events_processed + excluded.events_processed,
    updated_at = excluded.updated_at
"""

_COLUMNS = (
    "destination, partition_id, segment_id, position, event_index, snapshot, events_processed, "
    "updated_at"
)


class SqliteOffsetStore:
    """Offsets in a SQLite file, so the default configuration needs no server.

    sqlite3 is blocking; each call runs in a worker thread, one at a time.
    """

    def __init__(self, path: str, clock: Clock) -> None:
        self._path = path
        self._clock = clock
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def load(self, destination: str, partition_id: str) -> OffsetRecord | None:
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM cdc_offsets WHERE destination = ? AND partition_id = ?",
            (destination, partition_id),
        )
        return _record(rows[0]) if rows else None

    async def commit(self, destination: str, checkpoint: Checkpoint) -> None:
        position = checkpoint.position
        await self._run(
            _UPSERT,
            (
                destination,
                checkpoint.partition_id,
                position.segment_id,
                position.offset,
                position.index,
                position.snapshot,
                checkpoint.events,
                self._clock.now().isoformat(),
            ),
        )

    async def list(self) -> builtins.list[OffsetRecord]:
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM cdc_offsets ORDER BY destination, partition_id", ()
        )
        return [_record(row) for row in rows]

    async def aclose(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await asyncio.to_thread(self._connection.close)
                self._connection = None

    async def _run(self, sql: str, params: tuple[object, ...]) -> builtins.list[tuple[object, ...]]:
        async with self._lock:
            return await asyncio.to_thread(self._execute, sql, params)

    def _execute(self, sql: str, params: tuple[object, ...]) -> builtins.list[tuple[object, ...]]:
        if self._connection is None:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self._path, check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(_SCHEMA)
            _add_snapshot_column(self._connection)
        with self._connection:
            return self._connection.execute(sql, params).fetchall()


def _add_snapshot_column(connection: sqlite3.Connection) -> None:
    """Files written before snapshots existed lack the column that names one."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(cdc_offsets)")}
    if "snapshot" not in columns:
        connection.execute("ALTER TABLE cdc_offsets ADD COLUMN snapshot TEXT")


def _record(row: tuple[object, ...]) -> OffsetRecord:
    destination, partition, segment, position, index, snapshot, processed, updated = row
    return OffsetRecord(
        destination=str(destination),
        partition_id=str(partition),
        position=SourcePosition(
            int(str(segment)),
            int(str(position)),
            int(str(index)),
            None if snapshot is None else str(snapshot),
        ),
        events_processed=int(str(processed)),
        updated_at=dt.datetime.fromisoformat(str(updated)),
    )
