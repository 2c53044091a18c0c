"""Decode the recorded segment (writes in tests/fixtures/commitlog/v7_basic/writes.cql)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from decimal import Decimal

import attrs
import pytest
from cassandra_recordings import RecordedSegment
from cassandra_segments import with_version

from cdc_adapters.cassandra.entry_decoder import EntryDecoder
from cdc_adapters.cassandra.event_mapper import CounterTracker, EventMapper
from cdc_adapters.cassandra.mutation import (
    MutationDecodeError,
    MutationDecoder,
    UnknownTableError,
)
from cdc_adapters.cassandra.schema_catalog import SchemaCatalog
from cdc_adapters.cassandra.segment import CommitLogEntry, iter_entries
from cdc_domain.cql_types import parse_cql_type
from cdc_domain.events import ChangeEvent, DeletionScope, Operation
from cdc_domain.schema import ColumnDefinition
from cdc_domain.values import Duration, UdtValue

CAPTURED = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _events(recorded: RecordedSegment, data: bytes | None = None) -> list[ChangeEvent]:
    decoder = MutationDecoder(recorded.schemas.get)
    mapper = EventMapper()
    events = []
    for entry in iter_entries(data or recorded.data, limit=recorded.idx_offset):
        assert isinstance(entry, CommitLogEntry)
        updates = decoder.decode(entry.mutation, entry.messaging_version)
        events += mapper.map_entry(updates, entry.segment_id, entry.offset, CAPTURED)
    return events


@pytest.fixture(scope="module")
def events(v7_basic: RecordedSegment) -> list[ChangeEvent]:
    return [e for e in _events(v7_basic) if e.table != "probe"]


def _of(events: list[ChangeEvent], table: str) -> list[ChangeEvent]:
    return [e for e in events if e.table == table]


def test_every_native_type(events: list[ChangeEvent]) -> None:
    first, second = _of(events, "all_types")
    assert first.operation is Operation.INSERT
    assert first.keyspace == "fx_v7_basic"
    assert first.partition_key == {"id": 1}
    assert first.timestamp_micros == 1000
    assert first.columns == {
        "a_ascii": "abc",
        "a_bigint": -(2**63),
        "a_blob": b"\xca\xfe",
        "a_boolean": True,
        "a_date": dt.date(2024, 2, 29),
        "a_decimal": Decimal("-123.4500"),
        "a_double": 1.5,
        "a_duration": Duration(1, 2, 3),
        "a_float": -0.25,
        "a_frozen_list": [1, 2, 3],
        "a_frozen_map": {"a": 1, "b": 2},
        "a_frozen_udt": UdtValue((("street", "Main"), ("number", 5), ("tags", frozenset({"x"})))),
        "a_inet": ipaddress.ip_address("::1"),
        "a_int": 2**31 - 1,
        "a_smallint": -32768,
        "a_text": "grüße ✓",
        "a_time": dt.time(13, 14, 15, 123456),
        "a_timestamp": dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        "a_timeuuid": uuid.UUID("50554d6e-29bb-11e5-b345-feff819cdc9f"),
        "a_tinyint": -128,
        "a_tuple": (7, "seven"),
        "a_uuid": uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
        "a_varint": 123456789012345678901234567890,
        "a_vector": [1.0, -2.5, 3.25],
    }
    # INSERT ... VALUES (2, null, ''): null is a tombstone next to live data.
    assert second.operation is Operation.INSERT
    assert second.columns == {"a_text": "", "a_int": None}


def test_row_operations_in_order(events: list[ChangeEvent]) -> None:
    rows = _of(events, "rows")
    kinds = [(e.operation, e.scope, e.static) for e in rows]
    assert kinds == [
        (Operation.UPDATE, None, True),
        (Operation.INSERT, None, False),
        (Operation.UPDATE, None, False),
        (Operation.UPDATE, None, False),
        (Operation.DELETE, DeletionScope.CELL, False),
        (Operation.DELETE, DeletionScope.ROW, False),
        (Operation.DELETE, DeletionScope.RANGE, False),
        (Operation.DELETE, DeletionScope.PARTITION, False),
        (Operation.UPDATE, None, True),
        (Operation.INSERT, None, False),
    ]
    assert [e.timestamp_micros for e in rows] == [
        2000,
        2000,
        2001,
        2002,
        2003,
        2004,
        2005,
        2006,
        2007,
        3000,
    ]


def test_insert_with_ttl_collections_and_static(events: list[ChangeEvent]) -> None:
    static, insert = _of(events, "rows")[:2]
    assert static.partition_key == {"pk": "p"}
    assert static.clustering_key == {}
    assert static.columns == {"s": 10}
    assert insert.clustering_key == {"ck1": 1, "ck2": "a"}
    assert insert.ttl_seconds == 3600
    assert insert.expires_at is not None
    assert insert.columns["v"] == 11
    assert insert.columns["l"] == [1, 2]
    assert insert.columns["st"] == frozenset({"x", "y"})
    assert insert.columns["m"] == {"k": 1}
    assert insert.columns["u"] == UdtValue((("street", "S"), ("number", 1), ("tags", None)))
    delta = insert.collections["l"]
    assert delta.overwritten
    assert [e.value for e in delta.elements] == [1, 2]
    assert all(e.ttl_seconds == 3600 and e.timestamp_micros == 2000 for e in delta.elements)


def test_element_updates(events: list[ChangeEvent]) -> None:
    update = _of(events, "rows")[3]
    assert update.columns == {}
    assert not any(d.overwritten for d in update.collections.values())
    assert [e.value for e in update.collections["l"].elements] == [3]
    assert update.collections["st"].removed == ("x",)
    assert update.collections["st"].removed_timestamp_micros == 2002
    assert [(e.key, e.value) for e in update.collections["m"].elements] == [("z", 26)]
    assert [(e.key, e.value) for e in update.collections["u"].elements] == [("number", 2)]


def test_deletes(events: list[ChangeEvent]) -> None:
    cell, row, ranged, partition = _of(events, "rows")[4:8]
    assert cell.deleted_columns == ("w",)
    assert row.clustering_key == {"ck1": 1, "ck2": "b"}
    assert partition.partition_key == {"pk": "q"}
    # ck2 is DESC: bounds follow the clustering order, so the range runs from 'f' down.
    bounds = ranged.clustering_range
    assert bounds is not None
    assert (dict(bounds.start.values), bounds.start.inclusive) == ({"ck1": 2, "ck2": "f"}, False)
    assert (dict(bounds.end.values), bounds.end.inclusive) == ({"ck1": 2, "ck2": "c"}, True)


def test_counters_are_increments(events: list[ChangeEvent]) -> None:
    assert [e.counters for e in _of(events, "counts")] == [{"n": 5}, {"n": 3}]
    assert [e.counter_totals for e in _of(events, "counts")] == [{"n": 5}, {"n": 8}]


def test_non_cdc_table_is_skipped(events: list[ChangeEvent]) -> None:
    assert not _of(events, "plain")
    assert [e.partition_key for e in _of(events, "rows")][-1] == {"pk": "b"}


def test_positions_and_ids(v7_basic: RecordedSegment, events: list[ChangeEvent]) -> None:
    positions = [e.position for e in events]
    assert positions == sorted(positions)
    assert all(p.segment_id == v7_basic.segment_id for p in positions)
    assert len({e.event_id for e in events}) == len(events)
    again = [e for e in _events(v7_basic) if e.table != "probe"]
    assert [e.event_id for e in again] == [e.event_id for e in events]


def test_version_8_decodes_the_same(v7_basic: RecordedSegment, events: list[ChangeEvent]) -> None:
    v8 = [e for e in _events(v7_basic, with_version(v7_basic.data, 8)) if e.table != "probe"]
    assert [(e.columns, e.collections, e.expires_at) for e in v8] == [
        (e.columns, e.collections, e.expires_at) for e in events
    ]


def test_unknown_table_keeps_the_raw_entry(v7_basic: RecordedSegment) -> None:
    known = {k: v for k, v in v7_basic.schemas.items() if v.table != "all_types"}
    decoder = MutationDecoder(known.get)
    failures = []
    for entry in iter_entries(v7_basic.data, limit=v7_basic.idx_offset):
        assert isinstance(entry, CommitLogEntry)
        try:
            decoder.decode(entry.mutation, entry.messaging_version)
        except UnknownTableError as exc:
            failures.append((exc, entry))
    assert len(failures) == 2
    assert all(exc.raw == entry.mutation for exc, entry in failures)
    assert {exc.table_id for exc, _ in failures} == {v7_basic.table("all_types").table_id}


def test_damaged_mutation_is_a_decode_error(v7_basic: RecordedSegment) -> None:
    decoder = MutationDecoder(v7_basic.schemas.get)
    entry = next(
        e
        for e in iter_entries(v7_basic.data, limit=v7_basic.idx_offset)
        if isinstance(e, CommitLogEntry) and v7_basic.table("rows").table_id.bytes in e.mutation
    )
    with pytest.raises(MutationDecodeError) as info:
        decoder.decode(entry.mutation[:-3], entry.messaging_version)
    assert info.value.raw == entry.mutation[:-3]
    with pytest.raises(MutationDecodeError):
        decoder.decode(entry.mutation + b"\0", entry.messaging_version)
    with pytest.raises(MutationDecodeError, match="messaging version"):
        decoder.decode(entry.mutation, 11)


def test_an_undecodable_entry_is_a_dead_letter_naming_the_servers_that_write_it(
    v7_basic: RecordedSegment,
) -> None:
    entry = next(
        e
        for e in iter_entries(v7_basic.data, limit=v7_basic.idx_offset)
        if isinstance(e, CommitLogEntry) and v7_basic.table("rows").table_id.bytes in e.mutation
    )
    damaged = entry._replace(mutation=entry.mutation[:-3])
    decoder = EntryDecoder(SchemaCatalog(schemas=v7_basic.schemas.values()))
    failure = decoder.decode(damaged, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).failure
    assert failure is not None
    assert failure.raw == damaged.mutation
    assert failure.schema_details["messaging_version"] == 12
    assert "Cassandra 4.0 or 4.1" in failure.schema_details["written_by"]


def _counter_context(shard: bytes, clock: int, total: int) -> bytes:
    return (
        (1).to_bytes(2, "big")
        + (-32768).to_bytes(2, "big", signed=True)
        + shard
        + clock.to_bytes(8, "big")
        + total.to_bytes(8, "big", signed=True)
    )


def test_counter_tracker_gives_the_same_increment_on_every_read() -> None:
    tracker = CounterTracker(capacity=1)
    shard = uuid.uuid4().bytes
    assert tracker.increment(("k",), _counter_context(shard, 10, 5)) == 5
    assert tracker.increment(("k",), _counter_context(shard, 20, 3)) == -2
    assert tracker.increment(("k",), _counter_context(shard, 20, 3)) == -2
    assert tracker.increment(("k",), _counter_context(shard, 10, 5)) == 5
    assert tracker.increment(("other",), _counter_context(shard, 10, 4)) == 4
    # "k" was evicted: its previous total is unknown again.
    late = _counter_context(shard, 30, 10)
    assert tracker.increment(("k",), late, first_sight_is_new=False) is None


def test_counter_tracker_never_guesses_after_a_restart() -> None:
    tracker = CounterTracker()
    shard = uuid.uuid4().bytes
    assert (
        tracker.increment(("k",), _counter_context(shard, 10, 5), first_sight_is_new=False) is None
    )
    assert tracker.increment(("k",), _counter_context(shard, 20, 8), first_sight_is_new=False) == 3


def test_entries_of_one_table_share_one_read_only_schemas_mapping(
    v7_basic: RecordedSegment,
) -> None:
    rows = v7_basic.table("rows")
    catalog = SchemaCatalog(schemas=v7_basic.schemas.values())
    decoder = EntryDecoder(catalog)
    entries = [
        e
        for e in iter_entries(v7_basic.data, limit=v7_basic.idx_offset)
        if isinstance(e, CommitLogEntry) and rows.table_id.bytes in e.mutation
    ]
    first, second = (decoder.decode(e, CAPTURED) for e in entries[:2])
    assert first.schemas == {"fx_v7_basic.rows": rows}
    assert second.schemas is first.schemas
    with pytest.raises(TypeError):
        first.schemas["fx_v7_basic.rows"] = rows  # type: ignore[index]
    added = ColumnDefinition("added", parse_cql_type("int"))
    newer = attrs.evolve(rows, columns=(*rows.columns, added))
    catalog.replace([newer if s is rows else s for s in v7_basic.schemas.values()])
    assert decoder.decode(entries[0], CAPTURED).schemas == {"fx_v7_basic.rows": newer}
