"""Every CQL type's edge values written through the sink and read back equal, on both
servers (modern types on chdb, the documented fallbacks on 18.16)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from decimal import Decimal

import attrs
import pytest

from cdc_adapters.clickhouse import ClickHouseClient
from cdc_domain.cql_types import parse_cql_type
from cdc_domain.errors import EventsRejectedError
from cdc_domain.events import ChangeEvent, Operation, SourcePosition
from cdc_domain.mirror import MirrorState
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import SinkBatch
from cdc_domain.schema import ColumnDefinition, ColumnKind, TableSchema, resolve_udts
from cdc_domain.values import Duration, UdtValue
from tests.factories import CAPTURED

UTC = dt.UTC
ADDRESS = [("street", parse_cql_type("text")), ("zip", parse_cql_type("int"))]

KEYS = {"k_text": "text", "k_uuid": "uuid"}
CLUSTERING = {"k_ts": "timestamp", "k_date": "date"}
COLUMNS = {
    "c_ascii": "ascii", "c_text": "text", "c_bigint": "bigint", "c_int": "int",
    "c_smallint": "smallint", "c_tinyint": "tinyint", "c_varint": "varint",
    "c_decimal": "decimal", "c_float": "float", "c_double": "double", "c_boolean": "boolean",
    "c_uuid": "uuid", "c_timeuuid": "timeuuid", "c_timestamp": "timestamp", "c_date": "date",
    "c_time": "time", "c_duration": "duration", "c_inet": "inet", "c_blob": "blob",
    "c_list": "frozen<list<text>>", "c_set": "frozen<set<int>>",
    "c_map": "frozen<map<text, bigint>>", "c_tuple": "tuple<int, text, boolean>",
    "c_nested": "frozen<list<frozen<map<int, text>>>>", "c_dates": "frozen<list<date>>",
    "c_times": "frozen<set<timestamp>>", "c_vector": "vector<float, 3>",
    "c_udt": "frozen<address>",
}  # fmt: skip

LOW = {
    "c_ascii": "", "c_text": "tab\there\nnew 'quote' \\ back `tick` é ✓ 😀",
    "c_bigint": -(2**63), "c_int": -(2**31), "c_smallint": -(2**15), "c_tinyint": -128,
    "c_varint": -(10**40), "c_decimal": Decimal("-12345678901234567890.123456789012345678901"),
    "c_float": -3.4028234663852886e38, "c_double": -1.7976931348623157e308,
    "c_boolean": False, "c_uuid": uuid.UUID(int=0), "c_timeuuid": uuid.uuid1(node=1, clock_seq=0),
    "c_timestamp": dt.datetime(1900, 1, 1, tzinfo=UTC), "c_date": dt.date(1900, 1, 1),
    "c_time": dt.time(0, 0), "c_duration": Duration(-1, -2, -3),
    "c_inet": ipaddress.ip_address("0.0.0.0"), "c_blob": bytes(range(256)),
    "c_list": ["", "a'b", "c\\d", "e\tf"], "c_set": frozenset({-(2**31), 0, 2**31 - 1}),
    "c_map": {"": -(2**63), "k'\t": 2**63 - 1}, "c_tuple": (None, "x'y", False),
    "c_nested": [{1: "one"}, {}], "c_dates": [dt.date(1900, 1, 1), dt.date(2299, 12, 31)],
    "c_times": frozenset({dt.datetime(1970, 1, 1, tzinfo=UTC)}),
    "c_vector": [1.5, -0.0, float("inf")],
    "c_udt": UdtValue((("street", "Main\t'St'"), ("zip", None))),
}  # fmt: skip
HIGH = {
    "c_ascii": "~", "c_text": "\\N", "c_bigint": 2**63 - 1, "c_int": 2**31 - 1,
    "c_smallint": 2**15 - 1, "c_tinyint": 127, "c_varint": 10**40,
    "c_decimal": Decimal("1E+30"), "c_float": 1.401298464324817e-45,
    "c_double": 2.2250738585072014e-308,
    "c_boolean": True, "c_uuid": uuid.UUID(int=2**128 - 1), "c_timeuuid": uuid.uuid1(),
    "c_timestamp": dt.datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    "c_date": dt.date(2299, 12, 31), "c_time": dt.time(23, 59, 59, 999999),
    "c_duration": Duration(2**31 - 1, 2**31 - 1, 2**63 - 1),
    "c_inet": ipaddress.ip_address("ffff::1"), "c_blob": b"", "c_list": ["x"],
    "c_set": frozenset({7}), "c_map": {"k": 1}, "c_tuple": (2**31 - 1, "", True),
    "c_nested": [{-(2**31): "\\"}], "c_dates": [dt.date(2000, 2, 29)],
    "c_times": frozenset({dt.datetime(2299, 12, 31, tzinfo=UTC)}),
    "c_vector": [3.4028234663852886e38, -1.401298464324817e-45, float("-inf")],
    "c_udt": UdtValue((("street", ""), ("zip", 2**31 - 1))),
}  # fmt: skip


def _column(name: str, cql: str, kind: ColumnKind, position: int = -1) -> ColumnDefinition:
    cql_type = resolve_udts(
        parse_cql_type(cql, "types"), lambda ks, n: ADDRESS if n == "address" else None
    )
    return ColumnDefinition(name, cql_type, kind, position)


SCHEMA = TableSchema(
    "types",
    "everything",
    uuid.uuid4(),
    (
        *(_column(n, t, ColumnKind.PARTITION_KEY, i) for i, (n, t) in enumerate(KEYS.items())),
        *(_column(n, t, ColumnKind.CLUSTERING, i) for i, (n, t) in enumerate(CLUSTERING.items())),
        *(_column(n, t, ColumnKind.REGULAR) for n, t in COLUMNS.items()),
    ),
)


def _event(key: tuple, clustering: tuple, columns: dict, ts: int, offset: int) -> ChangeEvent:
    return ChangeEvent.create(
        operation=Operation.INSERT,
        keyspace="types",
        table="everything",
        partition_key=dict(zip(KEYS, key, strict=True)),
        clustering_key=dict(zip(CLUSTERING, clustering, strict=True)),
        columns=columns,
        timestamp_micros=ts,
        captured_at=CAPTURED,
        position=SourcePosition(1, offset),
    )


def _batch(*events: ChangeEvent) -> SinkBatch:
    checkpoint = Checkpoint("node1", events[-1].position, len(events))
    return SinkBatch(events, {SCHEMA.qualified_name: SCHEMA}, checkpoint)


EVENTS = (
    _event(
        ("", uuid.UUID(int=0)),
        (dt.datetime(1900, 1, 1, tzinfo=UTC), dt.date(1900, 1, 1)),
        LOW,
        10,
        1,
    ),
    _event(
        ("key\t'\\`", uuid.UUID(int=2**128 - 1)),
        (dt.datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), dt.date(2299, 12, 31)),
        HIGH,
        10,
        2,
    ),
    _event(
        ("nulls", uuid.uuid4()),
        (dt.datetime(2000, 1, 1, tzinfo=UTC), dt.date(2026, 1, 1)),
        {},
        10,
        3,
    ),
)


def _expected(*events: ChangeEvent) -> dict:
    state = MirrorState()
    state.apply_all(events)
    return state.rows(SCHEMA.qualified_name)


async def test_edge_values_round_trip(make_sink):
    sink, read_back = await make_sink()
    await sink.write(_batch(*EVENTS))
    assert await read_back(SCHEMA) == _expected(*EVENTS)


async def test_values_survive_a_read_back_of_the_cell_state(make_sink):
    """A fresh sink has no cache: a partial update merges with the state read back."""
    sink, read_back = await make_sink()
    await sink.write(_batch(*EVENTS))
    again, _ = await make_sink(database_prefix=sink.database_for(""))
    update = attrs.evolve(
        EVENTS[1], operation=Operation.UPDATE, columns={"c_int": 0}, timestamp_micros=20,
        position=SourcePosition(2, 1), event_id="update",
    )  # fmt: skip
    await again.write(_batch(update))
    assert await read_back(SCHEMA) == _expected(*EVENTS, update)


@pytest.mark.parametrize(
    ("column", "value", "fits_old", "fits_modern"),
    [
        ("c_int", 2**31, False, False),
        ("c_timestamp", dt.datetime(1800, 1, 1, tzinfo=UTC), True, False),
        ("c_date", dt.date(1, 1, 1), True, False),
        # Doubles travel as their IEEE bits: even 18.16, which reads subnormals written
        # as text as 0, holds them.
        ("c_double", 5e-324, True, True),
    ],
)
async def test_a_value_the_column_cannot_hold_rejects_only_its_event(
    make_sink, server_url, column, value, fits_old, fits_modern
):
    """Never a silent clamp: the event is rejected (for the dead letter queue) and nothing
    of the batch is written; where the column holds the value, it reads back equal."""
    sink, read_back = await make_sink()
    bad = attrs.evolve(EVENTS[0], columns={column: value}, event_id="bad")
    client = ClickHouseClient(server_url)
    modern = (await client.features()).date32
    await client.aclose()
    if fits_modern if modern else fits_old:
        await sink.write(_batch(bad))
        assert await read_back(SCHEMA) == _expected(bad)
        return
    with pytest.raises(EventsRejectedError) as raised:
        await sink.write(_batch(bad, EVENTS[1]))
    assert raised.value.event_ids == ("bad",)
    assert await read_back(SCHEMA) == {}
