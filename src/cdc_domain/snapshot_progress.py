"""How far each table's snapshot got in each destination, kept in the offset store.

Progress is recorded through the :class:`~cdc_domain.ports.OffsetStore` port every
destination already has, under partition ids no source uses (``snapshot/...``), so
every store (SQLite, PostgreSQL, ClickHouse, memory, and the sinks that keep their
offsets in their own database) keeps it without a port or a table of its own, and a
destination whose offsets live with its data has its snapshot progress there too.

Records, per destination and agent (the source's partition id: each agent snapshots
its own node's ranges, so two agents never read each other's records):

``snapshot/<agent>/<ks.table>``
    a run started: ``SourcePosition(-1, pieces, ranges, run)``, the split it planned
    (``pieces`` per ring range, ``ranges`` in all), so a resumed run plans the same ranges.
``snapshot/<agent>/<ks.table>/range/<start>/<end>``
    a range finished in ``run``: ``SourcePosition(-1, rows, 0, run)``.
``snapshot/<agent>/<ks.table>/done``
    the run finished, every range read: ``SourcePosition(-1, ranges, 0, run)``.

A range is recorded only after every one of its events was written (or dead-lettered),
so after a crash the ranges not recorded are exactly those to read again; the writes
are idempotent, so a range read twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

import attrs

from cdc_domain.events import SourcePosition
from cdc_domain.offsets import Checkpoint, OffsetRecord
from cdc_domain.ports import OffsetStore
from cdc_domain.tokens import TokenRange

__all__ = ["SNAPSHOT_PREFIX", "SnapshotProgress", "TableProgress", "is_snapshot_record"]

SNAPSHOT_PREFIX = "snapshot/"
_SEGMENT = -1
_RANGE = re.compile(r"^(?P<table>.+)/range/(?P<start>-?\d+)/(?P<end>-?\d+)$")
_DONE = "/done"


def is_snapshot_record(record: OffsetRecord) -> bool:
    """Whether an offset store record is snapshot progress rather than a position."""
    return record.partition_id.startswith(SNAPSHOT_PREFIX)


@attrs.frozen
class TableProgress:
    """One table's snapshot in one destination, as recorded: the current run (None:
    never started), its split, the ranges it finished with their rows, and whether it
    finished. ``finished_runs`` counts how often a run of it finished, ever."""

    destination: str
    table: str
    run: str | None = None
    pieces: int = 1
    planned: int = 0
    ranges: dict[TokenRange, int] = attrs.field(factory=dict)
    finished: bool = False
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def rows(self) -> int:
        return sum(self.ranges.values())


class SnapshotProgress:
    """Reads and writes the records of one agent (``partition_id``)."""

    def __init__(self, partition_id: str) -> None:
        self._prefix = f"{SNAPSHOT_PREFIX}{partition_id}/"

    def _table_id(self, table: str) -> str:
        return f"{self._prefix}{table}"

    async def load(
        self, store: OffsetStore, destination: str, tables: Iterable[str] | None = None
    ) -> dict[str, TableProgress]:
        """Every table's progress in ``destination`` (those of ``tables`` only, each
        present, empty when never started)."""
        starts: dict[str, OffsetRecord] = {}
        dones: dict[str, OffsetRecord] = {}
        ranges: dict[str, list[tuple[TokenRange, OffsetRecord]]] = {}
        for record in await store.list():
            if record.destination != destination or not record.partition_id.startswith(
                self._prefix
            ):
                continue
            rest = record.partition_id[len(self._prefix) :]
            if (found := _RANGE.match(rest)) is not None:
                bounds = TokenRange(int(found["start"]), int(found["end"]))
                ranges.setdefault(found["table"], []).append((bounds, record))
            elif rest.endswith(_DONE):
                dones[rest[: -len(_DONE)]] = record
            else:
                starts[rest] = record
        wanted = list(starts) if tables is None else list(tables)
        progress = {}
        for table in wanted:
            start = starts.get(table)
            if start is None:
                progress[table] = TableProgress(destination, table)
                continue
            run = start.position.snapshot
            done = dones.get(table)
            progress[table] = TableProgress(
                destination=destination,
                table=table,
                run=run,
                pieces=start.position.offset,
                planned=start.position.index,
                ranges={
                    bounds: record.position.offset
                    for bounds, record in ranges.get(table, [])
                    if record.position.snapshot == run
                },
                finished=done is not None and done.position.snapshot == run,
                started_at=start.updated_at,
                updated_at=max(
                    [start.updated_at]
                    + [r.updated_at for _, r in ranges.get(table, []) if r.position.snapshot == run]
                    + ([done.updated_at] if done is not None else [])
                ),
            )
        return progress

    async def start(
        self,
        store: OffsetStore,
        destination: str,
        table: str,
        *,
        run: str,
        pieces: int,
        ranges: int,
    ) -> None:
        position = SourcePosition(_SEGMENT, pieces, ranges, run)
        await store.commit(destination, Checkpoint(self._table_id(table), position, 0))

    async def finish_range(
        self,
        store: OffsetStore,
        destination: str,
        table: str,
        *,
        run: str,
        token_range: TokenRange,
        rows: int,
        events: int,
    ) -> None:
        partition = f"{self._table_id(table)}/range/{token_range.start}/{token_range.end}"
        position = SourcePosition(_SEGMENT, rows, 0, run)
        await store.commit(destination, Checkpoint(partition, position, events))

    async def finish(
        self, store: OffsetStore, destination: str, table: str, *, run: str, ranges: int
    ) -> None:
        position = SourcePosition(_SEGMENT, ranges, 0, run)
        await store.commit(destination, Checkpoint(self._table_id(table) + _DONE, position, 0))
