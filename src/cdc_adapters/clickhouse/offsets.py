"""Committed positions in a ClickHouse ``ReplacingMergeTree`` table.

ClickHouse cannot write the position in the same transaction as the data, so the sink's
writes are idempotent and the position is committed after them (ADR 0002). A commit
reads the current record and inserts the next version (``_version`` + 1) with the
running total. Committing the position already recorded is taken as the same commit
retried (its response was lost, or the process died right after it) and adds nothing,
so ``events_processed`` counts each delivered batch once.
"""

from __future__ import annotations

import builtins
import datetime as dt

from cdc_adapters.clickhouse.client import ClickHouseClient, RetryPolicy
from cdc_adapters.clickhouse.sql import qualified, quote_identifier, quote_string
from cdc_domain.events import SourcePosition
from cdc_domain.offsets import Checkpoint, OffsetRecord
from cdc_domain.ports import Clock

__all__ = ["ClickHouseOffsetStore"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_COLUMNS = (
    "destination, partition_id, segment_id, offset, idx, snapshot, events_processed, "
    "updated_at_micros, _version"
)


class ClickHouseOffsetStore:
    """Positions per (destination, source partition) in ``<database>.<table>``; built from
    configuration keys like the sink."""

    def __init__(
        self,
        *,
        url: str,
        clock: Clock,
        user: str | None = None,
        password: str | None = None,
        database: str = "cdc",
        table: str = "cdc_offsets",
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = ClickHouseClient(url, user=user, password=password, retry=retry)
        self._clock = clock
        self._database = database
        self._table = qualified(database, table)
        self._ready = False

    async def _ensure(self) -> None:
        if self._ready:
            return
        await self._client.execute(
            f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self._database)}"
        )
        await self._client.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} (destination String, "
            "partition_id String, segment_id Int64, offset Int64, idx Int64, "
            "snapshot Nullable(String), events_processed UInt64, updated_at_micros Int64, "
            "_version UInt64) ENGINE = ReplacingMergeTree(_version) "
            "ORDER BY (destination, partition_id)"
        )
        self._ready = True

    async def load(self, destination: str, partition_id: str) -> OffsetRecord | None:
        found = await self._versions(
            f"destination = {quote_string(destination)} "
            f"AND partition_id = {quote_string(partition_id)}"
        )
        return found[0][0] if found else None

    async def commit(self, destination: str, checkpoint: Checkpoint) -> None:
        found = await self._versions(
            f"destination = {quote_string(destination)} "
            f"AND partition_id = {quote_string(checkpoint.partition_id)}"
        )
        previous, version = found[0] if found else (None, 0)
        if previous is not None and _same(previous.position, checkpoint.position):
            return
        total = (previous.events_processed if previous else 0) + checkpoint.events
        now = self._clock.now()
        position = checkpoint.position
        fields = [
            _text(destination),
            _text(checkpoint.partition_id),
            str(position.segment_id),
            str(position.offset),
            str(position.index),
            "\\N" if position.snapshot is None else _text(position.snapshot),
            str(total),
            str((now - _EPOCH) // dt.timedelta(microseconds=1)),
            str(version + 1),
        ]
        row = "\t".join(fields) + "\n"
        await self._client.insert(f"{self._table} ({_COLUMNS})", row.encode())

    async def list(self) -> builtins.list[OffsetRecord]:
        return [record for record, _ in await self._versions("1")]

    async def _versions(self, where: str) -> builtins.list[tuple[OffsetRecord, int]]:
        await self._ensure()
        rows = await self._client.select(
            f"SELECT {_COLUMNS} FROM {self._table} FINAL WHERE {where} "
            "ORDER BY destination, partition_id"
        )
        return [_record(row) for row in rows]

    async def aclose(self) -> None:
        await self._client.aclose()


def _same(a: SourcePosition, b: SourcePosition) -> bool:
    return a == b and a.snapshot == b.snapshot


def _text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _record(row: builtins.list[str]) -> tuple[OffsetRecord, int]:
    destination, partition, segment, offset, idx, snapshot, total, micros, version = row
    position = SourcePosition(
        int(segment), int(offset), int(idx), None if snapshot == "\\N" else snapshot
    )
    updated = _EPOCH + dt.timedelta(microseconds=int(micros))
    return OffsetRecord(destination, partition, position, int(total), updated), int(version)
