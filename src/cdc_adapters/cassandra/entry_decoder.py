"""One commit log entry to change events, or to a dead letter: never an exception.

This is where the parser, the schema catalog and the event mapper meet. A mutation that
names a column or table the catalog does not know triggers one schema refresh (an
``ALTER TABLE ... ADD`` or ``CREATE TABLE`` the reader has not seen yet) before it is given
up as DECODE_ERROR or UNKNOWN_TABLE; a mutation holding cells of dropped columns is
reported with the table version that still had them.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import uuid
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import attrs

from cdc_adapters.cassandra.event_mapper import CounterTracker, EventMapper
from cdc_adapters.cassandra.mutation import (
    MutationDecodeError,
    MutationDecoder,
    PartitionUpdate,
    UnknownColumnError,
    UnknownTableError,
)
from cdc_adapters.cassandra.schema_catalog import SchemaCatalog
from cdc_adapters.cassandra.segment import CommitLogEntry, CommitLogError
from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.events import ChangeEvent, EventValidationError, SourcePosition
from cdc_domain.schema import TableSchema

__all__ = ["DecodeStats", "DecodedEntry", "EntryDecoder", "TableFilter", "failure_for"]


class TableFilter:
    """Which tables to capture: ``cdc = true`` ones named ``ks.table`` or matching ``ks.*``
    (shell patterns); every CDC table when no name is given."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._patterns = tuple(names)
        self._cache: dict[uuid.UUID, tuple[TableSchema, bool]] = {}

    def __call__(self, schema: TableSchema) -> bool:
        cached = self._cache.get(schema.table_id)
        if cached is not None and cached[0] is schema:
            return cached[1]
        wanted = schema.cdc and (
            not self._patterns
            or any(fnmatch.fnmatchcase(schema.qualified_name, p) for p in self._patterns)
        )
        self._cache[schema.table_id] = (schema, wanted)
        return wanted


_NO_SCHEMAS: Mapping[str, TableSchema] = MappingProxyType({})


WRITERS = {
    10: "Cassandra 3.0 or 3.11, which this reader does not support",
    12: "Cassandra 4.0 or 4.1, or 5.0 in storage_compatibility_mode CASSANDRA_4",
    13: "Cassandra 5.0 (storage_compatibility_mode NONE)",
    14: "a Cassandra newer than 5.0",
}
"""Which servers write mutations of each messaging version: named in a dead letter, so a
format this reader does not know is traced to the server that wrote it."""


class DecodedEntry(NamedTuple):
    """What one entry gave: events (with the schema of each table they were decoded
    with), or a failure. An entry of tables nobody captures gives neither.

    A named tuple rather than an attrs class: one is built per commit log entry, and a
    tuple is built in a third of the time a frozen attrs instance takes.
    """

    events: tuple[ChangeEvent, ...] = ()
    schemas: Mapping[str, TableSchema] = _NO_SCHEMAS
    failure: DeadLetterEvent | None = None


@attrs.define
class DecodeStats:
    entries_read: int = 0
    decode_errors: int = 0
    unknown_tables: int = 0
    schema_refreshes: int = 0


def failure_for(error: CommitLogError, segment_id: int, failed_at: dt.datetime) -> DeadLetterEvent:
    """The dead letter of bytes the segment reader could not frame (CRC, truncation)."""
    raw = getattr(error, "raw", b"") or b""
    return DeadLetterEvent.for_raw(
        raw,
        reason=FailureReason.DECODE_ERROR,
        error=f"{type(error).__name__}: {error}",
        failed_at=failed_at,
        position=SourcePosition(segment_id, error.offset, 0),
        schema_details={"segment_id": segment_id, "offset": error.offset},
    )


class EntryDecoder:
    """Decodes entries against ``catalog``, keeping only the tables ``tables`` accepts.

    ``event_prefix`` makes event ids unique across nodes (see :class:`EventMapper`).
    Not thread-safe: one caller at a time.
    """

    def __init__(
        self,
        catalog: SchemaCatalog,
        *,
        tables: TableFilter | None = None,
        event_prefix: str = "",
        counters: CounterTracker | None = None,
    ) -> None:
        self._catalog = catalog
        self._decoder = MutationDecoder(catalog.lookup, capture=tables or TableFilter())
        self.mapper = EventMapper(event_prefix=event_prefix, counters=counters)
        self.stats = DecodeStats()
        # What already failed after a refresh, with the catalog generation it failed at:
        # the same unknown id again is not worth another round trip until the schema moves.
        self._given_up: dict[tuple[uuid.UUID, str], int] = {}
        # id(schema) -> the schema and the DecodedEntry.schemas of an entry of it alone,
        # with no cells of dropped columns.
        self._single_schemas: dict[int, tuple[TableSchema, Mapping[str, TableSchema]]] = {}

    def decode(
        self, entry: CommitLogEntry, captured_at: dt.datetime, *, first_sight_is_new: bool = True
    ) -> DecodedEntry:
        self.stats.entries_read += 1
        try:
            try:
                updates = self._decoder.decode(entry.mutation, entry.messaging_version)
            except (UnknownTableError, UnknownColumnError) as exc:
                updates = self._decode_after_refresh(entry, exc)
        except UnknownTableError as exc:
            self.stats.unknown_tables += 1
            return self._failed(entry, exc, FailureReason.UNKNOWN_TABLE, captured_at)
        except MutationDecodeError as exc:
            self.stats.decode_errors += 1
            return self._failed(entry, exc, FailureReason.DECODE_ERROR, captured_at)
        if not updates:
            return DecodedEntry()
        try:
            events = self.mapper.map_entry(
                updates,
                entry.segment_id,
                entry.offset,
                captured_at,
                first_sight_is_new=first_sight_is_new,
            )
        except (EventValidationError, ValueError, TypeError, KeyError, IndexError) as exc:
            self.stats.decode_errors += 1
            return self._failed(entry, exc, FailureReason.DECODE_ERROR, captured_at)
        if len(updates) == 1 and not updates[0].dropped_columns:
            # _schemas' shared mapping for such an entry, found without calling it.
            cached = self._single_schemas.get(id(updates[0].table))
            if cached is not None and cached[0] is updates[0].table:
                return DecodedEntry(tuple(events), cached[1])
        return DecodedEntry(tuple(events), self._schemas(updates))

    def _decode_after_refresh(
        self, entry: CommitLogEntry, exc: UnknownTableError | UnknownColumnError
    ) -> list[PartitionUpdate]:
        """The entry decoded again after a catalog refresh for what ``exc`` names; ``exc``
        itself when a refresh is known to be futile."""
        if not self._refresh_for(exc):
            raise exc
        return self._decoder.decode(entry.mutation, entry.messaging_version)

    def _refresh_for(self, exc: UnknownTableError | UnknownColumnError) -> bool:
        """Refresh the catalog for what ``exc`` names, unless that is known to be futile."""
        key = (exc.table_id, exc.column if isinstance(exc, UnknownColumnError) else "")
        if not self._catalog.refreshable or self._given_up.get(key) == self._catalog.generation:
            return False
        self._catalog.refresh()
        self.stats.schema_refreshes += 1
        self._given_up[key] = self._catalog.generation
        if len(self._given_up) > 10_000:
            self._given_up.clear()
        return True

    def _schemas(self, updates: list[PartitionUpdate]) -> Mapping[str, TableSchema]:
        if len(updates) == 1 and not updates[0].dropped_columns:
            # Most entries are one update of a table as the catalog has it: every entry of
            # that schema shares one read-only mapping (which decode finds) instead of
            # building its own.
            schema = updates[0].table
            single = MappingProxyType({schema.qualified_name: schema})
            if len(self._single_schemas) > 10_000:
                self._single_schemas.clear()
            self._single_schemas[id(schema)] = (schema, single)
            return single
        schemas = {}
        for update in updates:
            schema = update.table
            if update.dropped_columns:
                schema = self._catalog.written_under(schema, _columns_of(update))
            schemas[schema.qualified_name] = schema
        return schemas

    def _failed(
        self,
        entry: CommitLogEntry,
        exc: Exception,
        reason: FailureReason,
        failed_at: dt.datetime,
    ) -> DecodedEntry:
        details: dict[str, object] = {
            "segment_id": entry.segment_id,
            "offset": entry.offset,
            "messaging_version": entry.messaging_version,
            "written_by": WRITERS.get(entry.messaging_version, "an unknown Cassandra version"),
        }
        table_id = getattr(exc, "table_id", None)
        if table_id is not None:
            details["table_id"] = str(table_id)
            known = self._catalog.lookup(table_id)
            if known is not None:
                details["table"] = known.qualified_name
        failure = DeadLetterEvent.for_raw(
            entry.mutation,
            reason=reason,
            error=f"{type(exc).__name__}: {exc}",
            failed_at=failed_at,
            position=SourcePosition(entry.segment_id, entry.offset, 0),
            schema_details=details,
        )
        return DecodedEntry(failure=failure)


def _columns_of(update: PartitionUpdate) -> set[str]:
    names: set[str] = set()
    for row in (update.static_row, *update.rows):
        if row is not None:
            names.update(row.values)
            names.update(cell[0] for cell in row.cells)
            names.update(column.name for column in row.complex)
    return names
