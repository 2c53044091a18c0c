"""The identity of a Cassandra write, whichever node's commit log it was read from.

With replication factor 3 every write is in three commit logs, so an agent per node
reads it three times: three events with different ``event_id``\\ s and positions (both
node-specific) but the same keyspace, table, key, write timestamp and cells. A sink that
keeps one record per write (the TimescaleDB history) and the dead letter queue key them
by :func:`write_id`, a digest of exactly that content, so the copies collapse into one.

A snapshot's event (:attr:`~cdc_domain.events.ChangeEvent.is_snapshot`) is no write but
a reading of what writes left. Its id is marked as such, so it never equals a streamed
write's: a history keeps a write the stream carried beside the snapshot's reading of
it, each once. And it leaves out TTLs, which are what was left when the row was read:
a range read again (a resumed snapshot, a re-sync) finds less of the same cells' TTL.

The digest is computed where it is needed, never while decoding: the decoder's
throughput is a measured target, and most destinations (current-state mirrors, which
converge by last-write-wins) never ask for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cdc_domain.events import ChangeEvent, ClusteringBound, CollectionDelta, CollectionElement
from cdc_domain.values import ValueCodecError, value_to_json

__all__ = ["write_id"]

_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Types whose ``repr`` is already exact and canonical: the common case, taken as is."""


def write_id(event: ChangeEvent) -> str:
    """A 32-hex-digit digest of what the write did to which row and when.

    It covers keyspace, table, partition and clustering key, the static flag, the
    operation, the deletion scope and range, the write timestamp, TTL and expiry, and
    every column set, deleted, collection element written or removed and counter
    written. It leaves out what depends on the node or the reader: ``event_id``,
    ``position`` and ``captured_at``, and a counter's increment where the counter's
    total is known (see :func:`_counters`).

    Values are encoded type-exactly (the int 1, the float 1.0, the text "1" and the
    boolean true differ) and canonically: mapping keys, set elements and map entries
    are sorted by their encoding, because a Python set's iteration order differs
    between processes, and the agents of one cluster are separate processes. The
    encoding is the ``repr`` of nested tuples of plain values, other values in the
    domain's lossless JSON form (:func:`value_to_json`): the ``repr`` of str, int,
    float, bool and None is exact and has not changed across Python 3 releases, and
    it is several times faster than ``json.dumps`` where every history row pays it.

    A snapshot's event has an id of its own kind, without its TTLs (see the module doc).
    """
    read = event.is_snapshot
    document: tuple[Any, ...] = (
        event.keyspace,
        event.table,
        _mapping(event.partition_key),
        [] if event.static else _mapping(event.clustering_key),
        event.static,
        event.operation.value,
        event.scope.value if event.scope else None,
        _range(event),
        event.timestamp_micros,
        None if read else event.ttl_seconds,
        None if read else _canonical(event.expires_at),
        _mapping(event.columns),
        tuple(sorted(event.deleted_columns)),
        tuple(sorted([(name, _delta(d, read)) for name, d in event.collections.items()])),
        _counters(event),
    )
    if read:
        document = ("snapshot", document)
    return hashlib.blake2b(repr(document).encode(), digest_size=16).hexdigest()


def _counters(event: ChangeEvent) -> tuple[tuple[str, str, int], ...]:
    """What the write did to counters. The commit log holds each counter's shard total,
    the same in every replica's copy; the increment is derived from it by the reader,
    and a reader that resumed past the shard's previous total does not know it. So a
    counter's total identifies the write and its increment counts only where no total
    is known (a source that gives increments alone)."""
    totals = event.counter_totals
    if not totals and not event.counters:
        return ()
    written = [(name, "total", value) for name, value in totals.items()]
    written += [(name, "increment", v) for name, v in event.counters.items() if name not in totals]
    return tuple(sorted(written))


def _range(event: ChangeEvent) -> Any:
    found = event.clustering_range
    if found is None:
        return None

    def bound(b: ClusteringBound) -> tuple[Any, bool]:
        return _mapping(b.values), b.inclusive

    return bound(found.start), bound(found.end), tuple(sorted(found.descending))


def _delta(delta: CollectionDelta, read: bool) -> tuple[Any, ...]:
    return (
        delta.kind,
        delta.overwritten,
        tuple(sorted((_element(e, read) for e in delta.elements), key=repr)),
        tuple(sorted((_canonical(k) for k in delta.removed), key=repr)),
        delta.removed_timestamp_micros,
    )


def _element(element: CollectionElement, read: bool) -> tuple[Any, ...]:
    return (
        _canonical(element.key),
        _canonical(element.value),
        element.timestamp_micros,
        None if read else element.ttl_seconds,
    )


def _mapping(values: Mapping[str, Any]) -> list[tuple[str, Any]]:
    plain = _PLAIN
    pairs = [
        (name, value if value.__class__ in plain else _canonical(value))
        for name, value in values.items()
    ]
    if len(pairs) > 1:
        pairs.sort()  # names are unique: sorting never compares two values
    return pairs


def _canonical(value: Any) -> Any:
    """A plain value as it is; any other in its lossless JSON form, with sets and maps
    in a canonical order. A value that form cannot hold (none reaches a sink, but a dead
    letter is made of whatever failed) is named by its type and ``repr``, so building a
    dead letter never fails on it."""
    if value.__class__ in _PLAIN:
        return value
    try:
        encoded = value_to_json(value)
    except ValueCodecError:
        return ("$repr", type(value).__qualname__, repr(value))
    return _sorted(encoded)


def _sorted(data: Any) -> Any:
    """The JSON form with set elements, map entries and object members sorted, objects
    as tuples led by their tag or "$object": only they are tuples, JSON arrays stay
    lists, so no array can read as an object. value_to_json encodes a dict with a "$"
    key as "$map", so a one-member object whose name starts with "$" is one of its
    tags."""
    if isinstance(data, list):
        return [_sorted(x) for x in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1:
        ((tag, payload),) = data.items()
        if tag == "$set":
            return tag, tuple(sorted((_sorted(x) for x in payload), key=repr))
        if tag == "$map":
            pairs = ((_sorted(k), _sorted(v)) for k, v in payload)
            return tag, tuple(sorted(pairs, key=lambda pair: repr(pair[0])))
    return ("$object", *sorted((name, _sorted(x)) for name, x in data.items()))
