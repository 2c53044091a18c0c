"""Every CQL type written through CQL comes back out of the commit log unchanged."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from cassandra.util import Duration as DriverDuration
from cassandra_live import CdcCapture

from cdc_domain.events import Operation
from cdc_domain.values import Duration, UdtValue

pytestmark = pytest.mark.integration

SERVER = tuple(int(p) for p in os.environ.get("CDC_TEST_CASSANDRA_VERSION", "5.0").split(".")[:2])

UTC = dt.UTC
TIMEUUID = uuid.UUID("50554d6e-29bb-11e5-b345-feff819cdc9f")

# (column type, value bound through the driver, value expected in the event)
CASES: list[tuple[str, Any, Any]] = [
    ("ascii", "plain ascii", "plain ascii"),
    ("text", "grüße ✓ 𝄞 日本", "grüße ✓ 𝄞 日本"),
    ("text", "", ""),
    ("varchar", "v", "v"),
    ("int", -(2**31), -(2**31)),
    ("int", 2**31 - 1, 2**31 - 1),
    ("bigint", -(2**63), -(2**63)),
    ("bigint", 2**63 - 1, 2**63 - 1),
    ("smallint", -32768, -32768),
    ("tinyint", 127, 127),
    ("varint", -(10**50), -(10**50)),
    ("decimal", Decimal("-1.2345E-40"), Decimal("-1.2345E-40")),
    (
        "decimal",
        Decimal("123456789012345678901234567890.5"),
        Decimal("123456789012345678901234567890.5"),
    ),
    ("float", -0.15625, -0.15625),
    ("float", float("inf"), float("inf")),
    ("double", 1.7976931348623157e308, 1.7976931348623157e308),
    ("boolean", False, False),
    ("uuid", uuid.UUID(int=2**128 - 1), uuid.UUID(int=2**128 - 1)),
    ("timeuuid", TIMEUUID, TIMEUUID),
    (
        "timestamp",
        dt.datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
        dt.datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
    ),
    (
        "timestamp",
        dt.datetime(1900, 1, 1, tzinfo=UTC),
        dt.datetime(1900, 1, 1, tzinfo=UTC),
    ),
    ("date", dt.date(1, 1, 1), dt.date(1, 1, 1)),
    ("date", dt.date(9999, 12, 31), dt.date(9999, 12, 31)),
    ("time", dt.time(23, 59, 59, 999999), dt.time(23, 59, 59, 999999)),
    ("duration", DriverDuration(-1, -2, -3_000_000_000), Duration(-1, -2, -3_000_000_000)),
    ("inet", "192.168.0.1", ipaddress.ip_address("192.168.0.1")),
    ("inet", "2001:db8::ff00:42:8329", ipaddress.ip_address("2001:db8::ff00:42:8329")),
    ("blob", b"\x00\x01\xff" * 100, b"\x00\x01\xff" * 100),
    ("blob", b"", b""),
    ("frozen<list<int>>", [3, 1, 2], [3, 1, 2]),
    ("frozen<set<text>>", {"b", "a"}, frozenset({"a", "b"})),
    ("frozen<map<int, text>>", {1: "one", 2: "two"}, {1: "one", 2: "two"}),
    (
        "frozen<map<text, frozen<list<frozen<set<int>>>>>>",
        {"k": [{1, 2}, set()]},
        {"k": [frozenset({1, 2}), frozenset()]},  # an empty frozen set inside stays empty
    ),
    ("frozen<set<frozen<list<int>>>>", {(1, 2), (3,)}, frozenset({(1, 2), (3,)})),
    ("tuple<int, text, frozen<list<int>>>", (1, None, [2]), (1, None, [2])),
    *(
        [
            ("vector<float, 3>", [0.5, -1.0, 2.25], [0.5, -1.0, 2.25]),
            ("vector<text, 2>", ["a", "bcd"], ["a", "bcd"]),
        ]
        if SERVER >= (5, 0)  # vectors came with 5.0
        else []
    ),
]


@pytest.fixture(scope="module")
def types_table(ddl: Callable[[str], None]) -> list[str]:
    ddl("CREATE TYPE {ks}.point (x int, label text, tags frozen<set<text>>)")
    columns = [f"c{i} {cql}" for i, (cql, _, _) in enumerate(CASES)]
    ddl(
        "CREATE TABLE {ks}.types (id int PRIMARY KEY, "
        + ", ".join(columns)
        + ", fu frozen<point>, u point, lu list<frozen<point>>) WITH cdc = true"
    )
    return [c.split()[0] for c in columns]


@pytest.mark.parametrize(
    "index", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_value_round_trip(
    capture: CdcCapture, keyspace: str, types_table: list[str], index: int
) -> None:
    _, bound, expected = CASES[index]
    column = types_table[index]
    (event,) = capture.run(
        (f"INSERT INTO {keyspace}.types (id, {column}) VALUES (%s, %s)", (index, bound)),
        tables={"types"},
    )
    assert event.operation is Operation.INSERT
    assert event.partition_key == {"id": index}
    assert event.columns == {column: expected}
    assert type(event.columns[column]) is type(expected)


def test_null_and_empty_values(capture: CdcCapture, keyspace: str, types_table: list[str]) -> None:
    text, bigint = types_table[1], types_table[6]
    (event,) = capture.run(
        f"INSERT INTO {keyspace}.types (id, c4, {text}, {bigint})"
        " VALUES (1000, null, '', blobAsBigint(0x))",
        tables={"types"},
    )
    # null is a tombstone (None); an empty bigint decodes to None as well; '' stays ''.
    assert event.columns == {"c4": None, text: "", bigint: None}


def test_udts(capture: CdcCapture, keyspace: str, types_table: list[str]) -> None:
    (event,) = capture.run(
        f"INSERT INTO {keyspace}.types (id, fu, u, lu) VALUES (2000,"
        " {x: 1, label: 'f', tags: {'t'}}, {x: 2, label: 'ü'}, [{x: 3}])",
        tables={"types"},
    )
    assert event.columns["fu"] == UdtValue((("x", 1), ("label", "f"), ("tags", frozenset({"t"}))))
    assert event.columns["u"] == UdtValue((("x", 2), ("label", "ü"), ("tags", None)))
    assert event.columns["lu"] == [UdtValue((("x", 3), ("label", None), ("tags", None)))]
    assert event.collections["u"].overwritten
    (update,) = capture.run(
        f"UPDATE {keyspace}.types SET u.label = 'new', u.x = null WHERE id = 2000",
        tables={"types"},
    )
    delta = update.collections["u"]
    assert not delta.overwritten
    assert [(e.key, e.value) for e in delta.elements] == [("label", "new")]
    assert delta.removed == ("x",)
