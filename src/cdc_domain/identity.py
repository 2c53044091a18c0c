"""The identity of a Cassandra write, whichever node's commit log it was read from.

With replication factor 3 every write is in three commit logs, so an agent per node
reads it three times: three events with different ``event_id``\\ s and positions (both
node-specific) but the same keyspace, table, key, write timestamp and cells. A sink that
keeps one record per write (the TimescaleDB history) and the dead letter queue key them
by :func:`write_id`, a digest of exactly that content, so the copies collapse into one.

The digest is computed where it is needed, never while decoding: the decoder's
throughput is a measured target, and most destinations (current-state mirrors, which
converge by last-write-wins) never ask for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cdc_domain.events import ChangeEvent, ClusteringBound, CollectionDelta, CollectionElement
from cdc_domain.values import ValueCodecError, value_to_json

__all__ = ["write_id"]

_PLAIN = frozenset({str, bool, type(None)})
"""Types whose JSON form is the value itself: the common case, taken without a call."""


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
    between processes, and the agents of one cluster are separate processes.
    """
    document = {
        "keyspace": event.keyspace,
        "table": event.table,
        "partition_key": _mapping(event.partition_key),
        "clustering_key": {} if event.static else _mapping(event.clustering_key),
        "static": event.static,
        "operation": event.operation.value,
        "scope": event.scope.value if event.scope else None,
        "range": _range(event),
        "timestamp": event.timestamp_micros,
        "ttl": event.ttl_seconds,
        "expires_at": _canonical(event.expires_at),
        "columns": _mapping(event.columns),
        "deleted_columns": sorted(event.deleted_columns),
        "collections": {name: _delta(d) for name, d in event.collections.items()},
        "counters": _counters(event),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _counters(event: ChangeEvent) -> dict[str, Any]:
    """What the write did to counters. The commit log holds each counter's shard total,
    the same in every replica's copy; the increment is derived from it by the reader,
    and a reader that resumed past the shard's previous total does not know it. So a
    counter's total identifies the write and its increment counts only where no total
    is known (a source that gives increments alone)."""
    written: dict[str, Any] = {f"total:{n}": v for n, v in event.counter_totals.items()}
    for name, increment in event.counters.items():
        if name not in event.counter_totals:
            written[f"increment:{name}"] = increment
    return written


def _range(event: ChangeEvent) -> Any:
    found = event.clustering_range
    if found is None:
        return None

    def bound(b: ClusteringBound) -> dict[str, Any]:
        return {"values": _mapping(b.values), "inclusive": b.inclusive}

    return {
        "start": bound(found.start),
        "end": bound(found.end),
        "descending": sorted(found.descending),
    }


def _delta(delta: CollectionDelta) -> dict[str, Any]:
    return {
        "kind": delta.kind,
        "overwritten": delta.overwritten,
        "elements": sorted((_element(e) for e in delta.elements), key=_text),
        "removed": sorted((_canonical(k) for k in delta.removed), key=_text),
        "removed_at": delta.removed_timestamp_micros,
    }


def _element(element: CollectionElement) -> list[Any]:
    return [
        _canonical(element.key),
        _canonical(element.value),
        element.timestamp_micros,
        element.ttl_seconds,
    ]


def _mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _canonical(value) for name, value in values.items()}


def _canonical(value: Any) -> Any:
    """The value's lossless JSON form (:func:`value_to_json`) with sets and maps in a
    canonical order. A value that form cannot hold (none reaches a sink, but a dead
    letter is made of whatever failed) is named by its type and ``repr``, so building
    a dead letter never fails on it."""
    if value.__class__ in _PLAIN:
        return value
    try:
        encoded = value_to_json(value)
    except ValueCodecError:
        return {"$repr": [type(value).__qualname__, repr(value)]}
    return _sorted(encoded)


def _sorted(data: Any) -> Any:
    if isinstance(data, list):
        return [_sorted(x) for x in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1:
        ((tag, payload),) = data.items()
        # Tags are unambiguous: value_to_json encodes a dict with a "$" key as "$map".
        if tag == "$set":
            return {tag: sorted((_sorted(x) for x in payload), key=_text)}
        if tag == "$map":
            pairs = ([_sorted(k), _sorted(v)] for k, v in payload)
            return {tag: sorted(pairs, key=lambda pair: _text(pair[0]))}
    return {key: _sorted(x) for key, x in data.items()}


def _text(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
