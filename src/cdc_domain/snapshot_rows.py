"""Rows read by a snapshot, and the change events that carry them.

A snapshot reads each row with the write time and remaining TTL of every cell
(``WRITETIME()``/``TTL()`` in CQL), so a snapshot event carries the row's *real* write
timestamps: last-write-wins then orders it against the stream exactly as Cassandra
orders the writes themselves, whatever arrives first. An event has one timestamp, so a
row becomes one event per group of cells sharing a write timestamp and TTL.

What CQL cannot tell, and what is done about it (ADR 0011):

* **The row marker** (an INSERT's liveness) has no ``WRITETIME``. The group with the
  lowest timestamp is the row's INSERT, carrying the marker (with that group's TTL):
  rows are nearly always created by INSERT, whose marker shares its cells' timestamp.
  A row with no regular cell at all exists only by its marker; its INSERT has
  timestamp 0, so any change the stream brings wins over it.
* **List elements** are identified by a cell timeuuid CQL never shows. A list becomes an
  overwrite (``SET l = [...]``) one microsecond after its newest element, with that
  element's TTL and keys made up in the list's order: the stream's copies of the same
  elements (written before the read) are then cleared instead of doubled, and elements
  appended after the read are newer and stay. An element removed by the stream after
  the read stays (its key is not the made-up one); a later overwrite of the list
  replaces it.
* **Element timestamps unknown** (Cassandra before 5.0 refuses ``WRITETIME`` on
  non-frozen collections and UDTs): the elements take the row's lowest simple-cell
  timestamp (0 without one), so any change the stream brings to them wins.

Static cells are their own row (``static=True``), once per partition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs

from cdc_domain.events import (
    ChangeEvent,
    CollectionDelta,
    CollectionElement,
    Operation,
    SourcePosition,
)

__all__ = [
    "SnapshotCell",
    "SnapshotCollection",
    "SnapshotElement",
    "SnapshotRow",
    "snapshot_events",
]

_INSERT = Operation.INSERT
_UPDATE = Operation.UPDATE
MARKER_ONLY_TIMESTAMP = 0
"""The timestamp of the INSERT of a row that has no regular cell (see the module doc)."""

# Version-1 UUIDs count 100 ns intervals from 1582-10-15; the Unix epoch is this many.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000
_SNAPSHOT_NODE = 0x5A0000000000  # a constant node id marks the made-up list keys


class SnapshotCell(NamedTuple):
    """A simple (or frozen) cell: its value, write time and TTL left when it was read.

    The row models are named tuples rather than attrs classes: a snapshot builds one
    per cell, and a tuple is built in a fifth of the time a frozen attrs instance takes.
    """

    value: Any
    timestamp: int
    ttl: int | None = None


class SnapshotElement(NamedTuple):
    """One element (field, for a UDT) of a non-frozen collection. ``timestamp`` is None
    where the server cannot tell it (before Cassandra 5.0). A list element's ``key`` is
    its index; a set's, the element (``value`` None); a map's, the key; a UDT's, the
    field name."""

    key: Any
    value: Any
    timestamp: int | None
    ttl: int | None = None


class SnapshotCollection(NamedTuple):
    kind: str
    elements: tuple[SnapshotElement, ...]


class SnapshotRow(NamedTuple):
    """One row as the snapshot read it (or a partition's static cells, ``static``).

    ``identity`` names the row's key stably (the source's encoding of the key values),
    so a range read again yields the same event ids; ``read_at`` is when it was read,
    which its cells' TTLs count from.
    """

    partition_key: Mapping[str, Any]
    clustering_key: Mapping[str, Any]
    cells: Mapping[str, SnapshotCell]
    collections: Mapping[str, SnapshotCollection]
    identity: str
    read_at: dt.datetime
    static: bool = False


@attrs.define
class _Group:
    columns: dict[str, Any] = attrs.field(factory=dict)
    collections: dict[str, CollectionDelta] = attrs.field(factory=dict)


def snapshot_events(
    row: SnapshotRow,
    *,
    keyspace: str,
    table: str,
    snapshot: str,
    offset: int,
    first_index: int,
    captured_at: dt.datetime,
) -> list[ChangeEvent]:
    """The events that put ``row`` in a destination as Cassandra holds it.

    Positions are ``SourcePosition(-1, offset, first_index + i, snapshot)``: ``offset``
    names the token range the row was read in, so positions are stable when a range is
    read again; they sort before any commit log position.
    """
    context = _Context(keyspace, table, row, snapshot, offset, first_index, captured_at)
    cells = row.cells
    if not row.collections and cells:
        # Nearly every row: cells written by one statement, one write time and TTL.
        stamp, ttl = _one_group(cells)
        if stamp is not None:
            columns = {name: cell.value for name, cell in cells.items()}
            return [context.event(0, stamp, ttl, columns, {})]
    groups: dict[tuple[int, int | None], _Group] = {}
    for name, cell in cells.items():
        _group(groups, cell.timestamp, cell.ttl).columns[name] = cell.value
    fallback = min((c.timestamp for c in cells.values()), default=MARKER_ONLY_TIMESTAMP)
    for name, collection in row.collections.items():
        if not collection.elements:
            continue
        if collection.kind == "list":
            _list_overwrite(groups, name, collection, fallback, row.identity)
            continue
        for element in collection.elements:
            stamp = fallback if element.timestamp is None else element.timestamp
            group = _group(groups, stamp, element.ttl)
            delta = group.collections.get(name)
            added = CollectionElement(element.key, element.value, stamp, element.ttl)
            elements = (*delta.elements, added) if delta else (added,)
            group.collections[name] = CollectionDelta(collection.kind, elements=elements)
    if not groups and not row.static:
        groups[(MARKER_ONLY_TIMESTAMP, None)] = _Group()
    return [
        context.event(rank, stamp, ttl, group.columns, group.collections)
        for rank, ((stamp, ttl), group) in enumerate(sorted(groups.items(), key=_by_time))
    ]


def _one_group(cells: Mapping[str, SnapshotCell]) -> tuple[int | None, int | None]:
    """The write time and TTL every cell shares, or (None, None)."""
    first = None
    for cell in cells.values():
        if first is None:
            first = cell
        elif cell.timestamp != first.timestamp or cell.ttl != first.ttl:
            return None, None
    assert first is not None
    return first.timestamp, None if first.ttl is None else max(first.ttl, 1)


class _Context:
    """What every event of one row shares."""

    __slots__ = ("captured_at", "first_index", "keyspace", "offset", "row", "snapshot", "table")

    def __init__(
        self,
        keyspace: str,
        table: str,
        row: SnapshotRow,
        snapshot: str,
        offset: int,
        first_index: int,
        captured_at: dt.datetime,
    ) -> None:
        self.keyspace = keyspace
        self.table = table
        self.row = row
        self.snapshot = snapshot
        self.offset = offset
        self.first_index = first_index
        self.captured_at = captured_at

    def event(
        self,
        rank: int,
        stamp: int,
        ttl: int | None,
        columns: dict[str, Any],
        collections: dict[str, CollectionDelta],
    ) -> ChangeEvent:
        """The row's ``rank``-th event, built without ``ChangeEvent.create``: what it
        checks holds by construction (names and keys from the schema, an aware capture
        time, a write with no deletion scope, a positive TTL), and it adds half to the
        cost of an event."""
        row = self.row
        names = sorted([*columns, *collections])
        expires = None
        if ttl is not None:
            expires = row.read_at.replace(microsecond=0) + dt.timedelta(seconds=ttl)
        return ChangeEvent(
            _event_id(self.keyspace, self.table, row, stamp, names),
            _INSERT if rank == 0 and not row.static else _UPDATE,
            self.keyspace,
            self.table,
            dict(row.partition_key),
            dict(row.clustering_key),
            columns,
            (),
            collections,
            {},
            {},
            None,
            None,
            row.static,
            stamp,
            ttl,
            expires,
            self.captured_at,
            SourcePosition(-1, self.offset, self.first_index + rank, self.snapshot),
        )


def _by_time(item: tuple[tuple[int, int | None], _Group]) -> tuple[int, int]:
    (stamp, ttl), _ = item
    return stamp, -1 if ttl is None else ttl


def _group(groups: dict[tuple[int, int | None], _Group], stamp: int, ttl: int | None) -> _Group:
    ttl = None if ttl is None else max(ttl, 1)
    found = groups.get((stamp, ttl))
    if found is None:
        found = groups[(stamp, ttl)] = _Group()
    return found


def _list_overwrite(
    groups: dict[tuple[int, int | None], _Group],
    name: str,
    collection: SnapshotCollection,
    fallback: int,
    identity: str,
) -> None:
    """The list as an overwrite just after its newest element (see the module doc)."""
    stamps = [e.timestamp for e in collection.elements if e.timestamp is not None]
    stamp = max(stamps) + 1 if stamps else fallback
    newest = max(collection.elements, key=lambda e: -1 if e.timestamp is None else e.timestamp)
    group = _group(groups, stamp, newest.ttl)
    elements = tuple(
        CollectionElement(_list_key(stamp, i, identity), e.value, stamp, newest.ttl)
        for i, e in enumerate(collection.elements)
    )
    group.collections[name] = CollectionDelta("list", overwritten=True, elements=elements)
    group.columns[name] = [e.value for e in collection.elements]


def _list_key(stamp: int, index: int, identity: str) -> uuid.UUID:
    """A version-1 UUID whose time is ``stamp`` plus ``index`` hundred nanoseconds, so
    the made-up keys keep the list's order and sort before anything appended later."""
    time = (_UUID_EPOCH_OFFSET + stamp * 10 + index) & ((1 << 60) - 1)
    clock_seq = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:2], "big") & 0x3FFF
    fields = (
        time & 0xFFFFFFFF,
        (time >> 32) & 0xFFFF,
        ((time >> 48) & 0x0FFF) | 0x1000,
        0x80 | (clock_seq >> 8),
        clock_seq & 0xFF,
        _SNAPSHOT_NODE,
    )
    return uuid.UUID(fields=fields)


def _event_id(keyspace: str, table: str, row: SnapshotRow, stamp: int, names: list[str]) -> str:
    """Stable across reads of the same cells, so re-reading a range (a resumed or a
    repeated snapshot) stores each event once where destinations deduplicate by id."""
    text = f"{keyspace}.{table}|{row.identity}|{int(row.static)}|{stamp}|{','.join(names)}"
    return "snapshot:" + hashlib.sha256(text.encode()).hexdigest()[:32]
