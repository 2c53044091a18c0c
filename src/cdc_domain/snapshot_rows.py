"""Rows read by a snapshot, and the change events that carry them.

A snapshot reads each row with the write time and remaining TTL of every cell
(``WRITETIME()``/``TTL()`` in CQL), so a snapshot event carries the row's *real* write
timestamps: last-write-wins then orders it against the stream exactly as Cassandra
orders the writes themselves, whatever arrives first. An event has one timestamp, so a
row becomes one event per group of cells sharing a write timestamp and TTL.

What CQL cannot tell, and what is done about it (ADR 0010):

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
from typing import Any

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

MARKER_ONLY_TIMESTAMP = 0
"""The timestamp of the INSERT of a row that has no regular cell (see the module doc)."""

# Version-1 UUIDs count 100 ns intervals from 1582-10-15; the Unix epoch is this many.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000
_SNAPSHOT_NODE = 0x5A0000000000  # a constant node id marks the made-up list keys


@attrs.frozen(slots=True)
class SnapshotCell:
    """A simple (or frozen) cell: its value, write time and TTL left when it was read."""

    value: Any
    timestamp: int
    ttl: int | None = None


@attrs.frozen(slots=True)
class SnapshotElement:
    """One element (field, for a UDT) of a non-frozen collection. ``timestamp`` is None
    where the server cannot tell it (before Cassandra 5.0). A list element's ``key`` is
    its index; a set's, the element (``value`` None); a map's, the key; a UDT's, the
    field name."""

    key: Any
    value: Any
    timestamp: int | None
    ttl: int | None = None


@attrs.frozen(slots=True)
class SnapshotCollection:
    kind: str
    elements: tuple[SnapshotElement, ...]


@attrs.frozen(slots=True)
class SnapshotRow:
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
    groups: dict[tuple[int, int | None], _Group] = {}
    for name, cell in row.cells.items():
        _group(groups, cell.timestamp, cell.ttl).columns[name] = cell.value
    fallback = min((c.timestamp for c in row.cells.values()), default=MARKER_ONLY_TIMESTAMP)
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
    events: list[ChangeEvent] = []
    read_second = row.read_at.replace(microsecond=0)
    for rank, ((stamp, ttl), group) in enumerate(sorted(groups.items(), key=_by_time)):
        names = sorted([*group.columns, *group.collections])
        operation = Operation.INSERT if rank == 0 and not row.static else Operation.UPDATE
        events.append(
            ChangeEvent.create(
                operation=operation,
                keyspace=keyspace,
                table=table,
                partition_key=row.partition_key,
                clustering_key=row.clustering_key,
                columns=group.columns,
                collections=group.collections,
                static=row.static,
                timestamp_micros=stamp,
                ttl_seconds=ttl,
                local_expiry=None if ttl is None else read_second + dt.timedelta(seconds=ttl),
                captured_at=captured_at,
                position=SourcePosition(-1, offset, first_index + len(events), snapshot),
                event_id=_event_id(keyspace, table, row, stamp, names),
            )
        )
    return events


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
