"""Reads the change events a live node's cdc_raw holds since a mark."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from cdc_adapters.cassandra.event_mapper import EventMapper
from cdc_adapters.cassandra.mutation import MutationDecoder
from cdc_adapters.cassandra.schema_reader import read_table_schemas
from cdc_adapters.cassandra.segment import (
    CommitLogEntry,
    CommitLogError,
    parse_segment_name,
    read_cdc_index,
    read_segment_file,
)
from cdc_domain.events import ChangeEvent
from cdc_domain.schema import TableSchema


class CdcCapture:
    """Reads the change events written to cdc_raw since :meth:`mark`."""

    def __init__(self, session: Any, cdc_raw: Path, keyspace: str) -> None:
        self.session = session
        self.cdc_raw = cdc_raw
        self.keyspace = keyspace
        self.positions: dict[Path, int] = {}
        self.errors: list[CommitLogError] = []
        # Counter increments need the shard totals seen before: one mapper for the module,
        # given each entry once (polling uses throwaway mappers).
        self.mapper = EventMapper()

    def _indexes(self) -> dict[Path, int]:
        found = {}
        for path in self.cdc_raw.glob("CommitLog-*.log"):
            index = read_cdc_index(path.with_name(path.stem + "_cdc.idx"))
            if index is not None:
                found[path] = index.offset
        return found

    def mark(self) -> None:
        """Where every segment's durable part ends now. An idx caught while Cassandra
        rewrites it reads as nothing, and its segment would then be read from its start,
        old entries included: so wait, a few sync periods at most, until every idx that
        exists reads. (A segment with no idx at all has nothing durable yet, or never
        will: read from its start once its idx appears, or never.)"""
        deadline = time.monotonic() + 2
        while True:
            found = self._indexes()
            indexed = {
                log
                for log in self.cdc_raw.glob("CommitLog-*.log")
                if log.with_name(log.stem + "_cdc.idx").exists()
            }
            if indexed <= set(found) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        self.positions = found

    def schemas(self) -> dict[uuid.UUID, TableSchema]:
        return {s.table_id: s for s in read_table_schemas(self.session)}

    def read(self, tables: set[str] | None, mapper: EventMapper) -> list[ChangeEvent]:
        schemas = self.schemas()
        decoder = MutationDecoder(schemas.get)
        captured = dt.datetime.now(dt.UTC)
        events: list[ChangeEvent] = []
        current = self._indexes()
        for path in sorted(current, key=lambda p: parse_segment_name(p.name) or (0, 0)):
            start = self.positions.get(path, 0)
            if current[path] <= start:
                continue
            for entry in read_segment_file(path, limit=current[path], start=start):
                if isinstance(entry, CommitLogError):
                    self.errors.append(entry)
                    continue
                assert isinstance(entry, CommitLogEntry)
                updates = [
                    u
                    for u in decoder.decode(entry.mutation, entry.messaging_version)
                    if u.table.keyspace == self.keyspace
                    and (tables is None or u.table.table in tables)
                ]
                events += mapper.map_entry(updates, entry.segment_id, entry.offset, captured)
        return events

    def run(
        self,
        *statements: str | tuple[str, tuple[Any, ...]],
        tables: set[str] | None = None,
        expect: int = 1,
        settle: float = 0.3,
    ) -> list[ChangeEvent]:
        """Execute ``statements`` and return the events they produced (at least ``expect``)."""
        self.mark()
        for statement in statements:
            if isinstance(statement, tuple):
                # Prepared, so values are serialized exactly (no client-side formatting).
                prepared = self.session.prepare(statement[0].replace("%s", "?"))
                self.session.execute(prepared, statement[1])
            else:
                self.session.execute(statement)
        deadline = time.monotonic() + 15
        events: list[ChangeEvent] = []
        while time.monotonic() < deadline:
            if len(self.read(tables, EventMapper())) >= expect:
                time.sleep(settle)
                break
            time.sleep(0.1)
        events = self.read(tables, self.mapper)
        assert not self.errors, self.errors
        assert len(events) >= expect, f"expected {expect} events, the commit log has {events}"
        return events
