"""Every CQL type with its edge values, as events of one table, for round-trip tests:
what a mirror gives back must equal what the reference state (``MirrorState``) holds.
Shared by the PostgreSQL and TimescaleDB test modules."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import uuid
from decimal import Decimal

from cdc_domain.cql_types import parse_cql_type
from cdc_domain.events import CollectionDelta, CollectionElement, Operation
from cdc_domain.schema import ColumnDefinition, ColumnKind, TableSchema, resolve_udts
from cdc_domain.values import Duration, UdtValue
from tests.integration.postgres.mirror_model import CAPTURED, ChangeEvent, SourcePosition

UTC = dt.UTC
_UDTS = {
    ("rt", "address"): [("street", "text"), ("zip", "int"), ("tags", "frozen<set<text>>")],
}


def _type(text: str):
    def lookup(keyspace: str, name: str):
        fields = _UDTS.get((keyspace, name))
        return None if fields is None else [(n, parse_cql_type(t, "rt")) for n, t in fields]

    return resolve_udts(parse_cql_type(text, "rt"), lookup)


# column -> (CQL type, edge values)
SCALARS: dict[str, tuple[str, list]] = {
    "c_ascii": ("ascii", ["", "plain \x7f"]),
    "c_text": ("text", ["", "日本語 🎉 'quoted' \"double\" \\", "x" * 100_000]),
    "c_tinyint": ("tinyint", [-128, 127]),
    "c_smallint": ("smallint", [-32768, 32767]),
    "c_int": ("int", [-(2**31), 2**31 - 1]),
    "c_bigint": ("bigint", [-(2**63), 2**63 - 1]),
    "c_varint": ("varint", [-(10**40) - 7, 10**60 + 1, 0]),
    "c_decimal": (
        "decimal",
        [Decimal("-1.000000000000000000000000000000001"), Decimal("1E+30"), Decimal("0.00")],
    ),
    "c_float": ("float", [3.4028234663852886e38, -1.401298464324817e-45, math.inf]),
    "c_double": ("double", [1.7976931348623157e308, 5e-324, -math.inf]),
    "c_boolean": ("boolean", [True, False]),
    "c_uuid": ("uuid", [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]),
    "c_timeuuid": ("timeuuid", [uuid.uuid1(node=1, clock_seq=2)]),
    "c_timestamp": (
        "timestamp",
        [
            dt.datetime(1, 1, 1, tzinfo=UTC),
            dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
            dt.datetime(1969, 12, 31, 23, 59, 59, 1000, tzinfo=UTC),
        ],
    ),
    "c_date": ("date", [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1970, 1, 1)]),
    "c_time": ("time", [dt.time(0, 0), dt.time(23, 59, 59, 999999)]),
    "c_duration": (
        "duration",
        [Duration(0, 0, 0), Duration(-14, -3, -5_000), Duration(1, 2, 3000)],
    ),
    "c_inet": (
        "inet",
        [ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("2001:db8::ff00:42:8329")],
    ),
    "c_blob": ("blob", [b"", bytes(range(256)) * 300]),
    "c_flist": ("frozen<list<int>>", [[], [1, 1, -(2**31)]]),
    "c_fset": ("frozen<set<text>>", [frozenset({"b", "a", ""})]),
    "c_fmap": ("frozen<map<int, text>>", [{1: "a", -2: ""}]),
    "c_umap": ("frozen<map<uuid, frozen<list<decimal>>>>", [{uuid.UUID(int=5): [Decimal("1.5")]}]),
    "c_tuple": (
        "tuple<int, text, timestamp>",
        [(1, None, dt.datetime(2020, 2, 29, tzinfo=UTC)), (None, "x", None)],
    ),
    "c_udt": (
        "frozen<address>",
        [UdtValue((("street", "Main"), ("zip", 12345), ("tags", frozenset({"a"}))))],
    ),
    "c_vector": ("vector<float, 3>", [[1.0, 2.5, -3.0]]),
    "c_nested": ("frozen<list<frozen<map<text, bigint>>>>", [[{"x": 2**62}, {}]]),
    "c_tset": ("frozen<set<frozen<tuple<int, blob>>>>", [frozenset({(1, b"\x00"), (2, b"")})]),
}

# Non-frozen collections and UDTs, written element by element (overwrite).
MULTICELL: dict[str, tuple[str, str, dict]] = {
    "m_set": ("set<timestamp>", "set", {dt.datetime(2001, 1, 1, tzinfo=UTC): None}),
    "m_map": ("map<text, decimal>", "map", {"k": Decimal("-0.5"), "é": Decimal("1e-20")}),
    "m_list": (
        "list<blob>",
        "list",
        {uuid.uuid1(node=3, clock_seq=i): bytes([i]) for i in range(3)},
    ),
    "m_udt": ("address", "udt", {"street": "Side", "zip": None}),
    "m_jlist": ("list<frozen<list<int>>>", "list", {uuid.uuid1(node=4, clock_seq=0): [1, 2]}),
}


def schema() -> TableSchema:
    columns = [
        ColumnDefinition("id", _type("int"), ColumnKind.PARTITION_KEY, 0),
        ColumnDefinition("k_blob", _type("blob"), ColumnKind.CLUSTERING, 0),
        ColumnDefinition("k_ts", _type("timestamp"), ColumnKind.CLUSTERING, 1),
    ]
    columns += [ColumnDefinition(n, _type(t)) for n, (t, _) in SCALARS.items()]
    columns += [ColumnDefinition(n, _type(t)) for n, (t, _, _) in MULTICELL.items()]
    return TableSchema("rt", "types", uuid.uuid5(uuid.NAMESPACE_DNS, "rt.types"), tuple(columns))


def events() -> list[ChangeEvent]:
    """One row per edge-value index; the last row also holds the multi-cell columns."""
    rows = max(len(v) for _, v in SCALARS.values())
    result = []
    for i in range(rows):
        columns = {n: values[i] for n, (_, values) in SCALARS.items() if i < len(values)}
        collections = {}
        if i == rows - 1:
            for name, (_, kind, elements) in MULTICELL.items():
                cells = tuple(CollectionElement(k, v, 100) for k, v in elements.items())
                collections[name] = CollectionDelta(kind, overwritten=True, elements=cells)
        result.append(
            ChangeEvent.create(
                operation=Operation.INSERT,
                keyspace="rt",
                table="types",
                partition_key={"id": i},
                clustering_key={
                    "k_blob": bytes([i, 0, 255]),
                    "k_ts": dt.datetime(2024, 1, 1, 0, 0, i, 123000, tzinfo=UTC),
                },
                columns=columns,
                collections=collections,
                timestamp_micros=100,
                captured_at=CAPTURED,
                position=SourcePosition(9, i),
            )
        )
    return result


def nan_event() -> ChangeEvent:
    return ChangeEvent.create(
        operation=Operation.INSERT,
        keyspace="rt",
        table="types",
        partition_key={"id": 99},
        clustering_key={"k_blob": b"", "k_ts": dt.datetime(2024, 1, 1, tzinfo=UTC)},
        columns={"c_float": math.nan, "c_double": math.nan},
        timestamp_micros=100,
        captured_at=CAPTURED,
        position=SourcePosition(9, 99),
    )


def nanosecond_duration_event() -> ChangeEvent:
    """A duration an ``interval`` (microseconds) cannot hold without loss."""
    event = nan_event()
    return ChangeEvent.create(
        operation=Operation.INSERT,
        keyspace="rt",
        table="types",
        partition_key={"id": 98},
        clustering_key=event.clustering_key,
        columns={"c_duration": Duration(0, 0, 1)},
        timestamp_micros=100,
        captured_at=CAPTURED,
        position=SourcePosition(9, 98),
    )
