"""The ChangeSource over one node's ``cdc_raw``: segments read as they grow, freed once
every destination is past them.

Positions. An event's position is (segment id, entry offset, rank in the entry). A batch
ends at its last event, or further when the scan went on through entries that gave no
event: at the entry's offset with index 0, or — once a segment's durable part is read to
its idx offset ``L`` — at ``(segment, L, -1)``: "everything before ``L``", which sorts
before anything Cassandra may still write at ``L``. Reading after a position skips
exactly what is at or before it, so a destination resuming from its committed position
gets nothing twice and nothing is lost.

Order and growth. Segments are read in id order, each up to the offset in its idx (never
a byte further), while Cassandra is still writing it; the reader only moves on to the next
segment once the idx says ``COMPLETED`` and everything up to its offset has been read, so
a late final section of an older segment cannot be skipped.

Schemas. The source decodes with the agent's one catalog (the schema source's), and
refreshes it when the node's schema version changes, checked after the idx offsets are
read: any mutation below those offsets was written after the DDL that preceded it, so
the refresh sees that DDL (a table just given ``cdc = true``, a new column). A batch
ends where a table's schema version changes, and ``ChangeBatch.schemas`` holds the
version each table's events were decoded with.

Work per call. :class:`SegmentReader` keeps each segment's section boundaries, so a read
at the head only reads the bytes added since; decoded entries are kept for the last
``cache_events`` events, so destinations reading the same range decode it once. One call
scans at most ``max_scan_entries`` entries, so a long stretch of other tables' mutations
costs several short calls instead of one long one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import attrs

from cdc_adapters.cassandra.cdc_directory import ListedSegment, list_segments
from cdc_adapters.cassandra.cdc_raw_space import measure_cdc_raw
from cdc_adapters.cassandra.entry_decoder import (
    DecodedEntry,
    EntryDecoder,
    TableFilter,
    failure_for,
)
from cdc_adapters.cassandra.schema_catalog import SchemaCatalog
from cdc_adapters.cassandra.schema_source import CassandraSchemaSource
from cdc_adapters.cassandra.segment import CommitLogEntry, CommitLogError, SegmentReader
from cdc_domain.dead_letters import DeadLetterEvent
from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.ports import ChangeBatch, SourceStorage
from cdc_domain.schema import TableSchema

__all__ = ["CassandraChangeSource", "SourceStats"]

BOUNDARY = -1
"""The event index of a position at a section boundary (see the module docstring)."""


@attrs.define
class SourceStats:
    """Running counters, for metrics and tests."""

    entries_read: int = 0
    decode_errors: int = 0
    unknown_tables: int = 0
    unknown_counter_increments: int = 0
    schema_refreshes: int = 0
    segments_deleted: int = 0


class _Batch:
    """The batch being built: events after ``after``, up to ``max_events``, one schema
    version per table."""

    def __init__(self, after: SourcePosition | None, max_events: int) -> None:
        self.after = after
        self.max_events = max_events
        self.events: list[ChangeEvent] = []
        self.failures: list[DeadLetterEvent] = []
        self.schemas: dict[str, TableSchema] = {}
        self.end: SourcePosition | None = None

    def _advance(self, position: SourcePosition) -> None:
        if (self.after is None or position > self.after) and (
            self.end is None or position > self.end
        ):
            self.end = position

    def fail(self, failure: DeadLetterEvent) -> None:
        assert failure.position is not None
        if self.after is None or failure.position > self.after:
            self.failures.append(failure)
            self._advance(failure.position)

    def take(self, segment_id: int, offset: int, decoded: DecodedEntry) -> bool:
        """Add the entry's events; False when the batch must end before (or in) it."""
        if decoded.failure is not None:
            self.fail(decoded.failure)
            return True
        events = decoded.events
        after = self.after
        if after is not None and after.segment_id == segment_id and after.offset == offset:
            events = tuple(e for e in events if e.position > after)
        if not events:
            self._advance(SourcePosition(segment_id, offset, 0))
            return True
        for event in events:
            held = self.schemas.get(event.qualified_table)
            if held is not None and held.version != decoded.schemas[held.qualified_name].version:
                return False
        room = self.max_events - len(self.events)
        if room <= 0:
            return False
        taken = events[:room]
        self.events.extend(taken)
        for event in taken:
            name = event.qualified_table
            self.schemas.setdefault(name, decoded.schemas[name])
        self._advance(taken[-1].position)
        return len(taken) == len(events) and len(self.events) < self.max_events

    def reached(self, segment_id: int, limit: int) -> None:
        self._advance(SourcePosition(segment_id, limit, BOUNDARY))

    def result(self) -> ChangeBatch:
        return ChangeBatch(tuple(self.events), tuple(self.failures), self.end, self.schemas)


class CassandraChangeSource:
    """Change events from the commit log segments in one node's ``cdc_raw_dir``.

    ``schemas`` is the schema source of the node owning the directory, whose catalog the
    source decodes with and keeps refreshed, or a fixed catalog (tools and tests); the
    source does not close it. ``tables`` narrows the ``cdc = true`` tables captured
    (``ks.table``, ``ks.*``). ``archive_dir`` keeps consumed segments there instead of
    deleting them. ``cdc_total_space_mb`` is the node's ``cdc_total_space``, which
    :meth:`storage` measures ``cdc_raw`` against (None: Cassandra's default).
    """

    def __init__(
        self,
        *,
        partition_id: str,
        cdc_raw_dir: str | os.PathLike[str],
        schemas: CassandraSchemaSource | SchemaCatalog,
        tables: Sequence[str] = (),
        archive_dir: str | os.PathLike[str] | None = None,
        cache_events: int = 20_000,
        max_scan_entries: int = 50_000,
        cdc_total_space_mb: int | None = None,
    ) -> None:
        if not partition_id:
            raise ValueError("partition_id is required")
        if cdc_total_space_mb is not None and cdc_total_space_mb < 1:
            raise ValueError(f"cdc_total_space_mb must be at least 1, got {cdc_total_space_mb}")
        self._total_space_mb = cdc_total_space_mb
        self._partition_id = partition_id
        self._directory = Path(cdc_raw_dir)
        self._archive = Path(archive_dir) if archive_dir is not None else None
        catalog = schemas.catalog if isinstance(schemas, CassandraSchemaSource) else schemas
        self._catalog = catalog
        self._decoder = EntryDecoder(
            catalog, tables=TableFilter(tables), event_prefix=f"{partition_id}:"
        )
        self._readers: dict[int, SegmentReader] = {}
        self._decoded: OrderedDict[tuple[int, int], DecodedEntry] = OrderedDict()
        self._cached_events = 0
        self._cache_events = cache_events
        self._max_scan = max_scan_entries
        self._lock = asyncio.Lock()
        self._deleted = 0

    @property
    def partition_id(self) -> str:
        return self._partition_id

    @property
    def stats(self) -> SourceStats:
        decode = self._decoder.stats
        return SourceStats(
            entries_read=decode.entries_read,
            decode_errors=decode.decode_errors,
            unknown_tables=decode.unknown_tables,
            unknown_counter_increments=self._decoder.mapper.unknown_increments,
            schema_refreshes=decode.schema_refreshes,
            segments_deleted=self._deleted,
        )

    async def read(self, after: SourcePosition | None, max_events: int) -> ChangeBatch:
        async with self._lock:
            return await asyncio.to_thread(self._read, after, max(1, max_events))

    async def acknowledge(self, position: SourcePosition) -> None:
        async with self._lock:
            await asyncio.to_thread(self._acknowledge, position)

    async def storage(self) -> SourceStorage:
        """How full ``cdc_raw`` is (see :func:`measure_cdc_raw`). Not behind the read
        lock: a health check must not wait for a long scan."""
        return await asyncio.to_thread(measure_cdc_raw, self._directory, self._total_space_mb)

    async def aclose(self) -> None:
        """Nothing of its own to release: the schema source is closed by its owner."""

    # -- reading (in a worker thread, one call at a time) --------------------------------

    def _read(self, after: SourcePosition | None, max_events: int) -> ChangeBatch:
        from_id = after.segment_id if after is not None else 0
        segments = list_segments(self._directory, from_id=from_id)
        self._forget_readers(segments)
        if not _anything_new(segments, after):
            return ChangeBatch()
        self._catalog.watch()
        batch = _Batch(after, max_events)
        captured_at = dt.datetime.now(dt.UTC)
        budget = [self._max_scan]
        for segment in segments:
            if segment.index is None:
                break  # idx caught while being rewritten: try again next call
            if not self._scan(segment, batch, captured_at, budget):
                break
            if not segment.index.completed:
                break  # never move past a segment Cassandra may still write to
        return batch.result()

    def _scan(
        self,
        segment: ListedSegment,
        batch: _Batch,
        captured_at: dt.datetime,
        budget: list[int],
    ) -> bool:
        """Add the segment's entries after ``batch.after``; True when read to its idx offset."""
        assert segment.index is not None
        limit = segment.index.offset
        after = batch.after
        start = after.offset if after is not None and after.segment_id == segment.segment_id else 0
        reader = self._readers.get(segment.segment_id)
        if reader is None:
            reader = self._readers[segment.segment_id] = SegmentReader(segment.log)
        try:
            if start < limit:
                items = reader.entries(start, limit)
                for item in items:
                    if isinstance(item, CommitLogError):
                        batch.fail(failure_for(item, segment.segment_id, captured_at))
                        continue
                    budget[0] -= 1
                    if not batch.take(
                        segment.segment_id, item.offset, self._decode(item, captured_at, after)
                    ):
                        return False
                    if budget[0] <= 0:
                        return False
        except CommitLogError as exc:  # the descriptor: nothing in the segment can be read
            batch.fail(failure_for(exc, segment.segment_id, captured_at))
        except FileNotFoundError:
            return True  # deleted under us (Cassandra in non-blocking mode): nothing to read
        batch.reached(segment.segment_id, limit)
        return True

    def _decode(
        self, entry: CommitLogEntry, captured_at: dt.datetime, after: SourcePosition | None
    ) -> DecodedEntry:
        key = (entry.segment_id, entry.offset)
        cached = self._decoded.get(key)
        if cached is not None:
            return cached
        decoded = self._decoder.decode(entry, captured_at, first_sight_is_new=after is None)
        if decoded.events or decoded.failure is not None:
            self._decoded[key] = decoded
            self._cached_events += len(decoded.events) + 1
            while self._cached_events > self._cache_events:
                _, dropped = self._decoded.popitem(last=False)
                self._cached_events -= len(dropped.events) + 1
        return decoded

    def _forget_readers(self, listed: list[ListedSegment]) -> None:
        present = {s.segment_id for s in listed}
        oldest = min(present, default=0)
        for segment_id in [i for i in self._readers if i >= oldest and i not in present]:
            del self._readers[segment_id]

    # -- freeing -----------------------------------------------------------------------

    def _acknowledge(self, position: SourcePosition) -> None:
        for segment in list_segments(self._directory):
            if segment.segment_id > position.segment_id:
                break
            index = segment.index
            if index is None or not index.completed:
                continue
            if segment.segment_id == position.segment_id and position.offset < index.offset:
                continue
            self._discard(segment)

    def _discard(self, segment: ListedSegment) -> None:
        """Delete (or archive) the segment, then its idx: a crash in between leaves an idx
        without a log, which nothing reads, rather than a log nobody will remove."""
        for path in (segment.log, segment.idx):
            try:
                if self._archive is None:
                    path.unlink()
                else:
                    self._archive.mkdir(parents=True, exist_ok=True)
                    shutil.move(path, self._archive / path.name)
            except FileNotFoundError:
                continue
        self._readers.pop(segment.segment_id, None)
        self._deleted += 1


def _anything_new(segments: list[ListedSegment], after: SourcePosition | None) -> bool:
    for segment in segments:
        if segment.index is None:
            return False
        if after is None or segment.segment_id > after.segment_id:
            return True
        if segment.index.offset > after.offset:
            return True
        if not segment.index.completed:
            return False
    return False
