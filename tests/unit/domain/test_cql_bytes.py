"""Values serialized as Cassandra does: the reader's decoder reads them back unchanged,
and known values give Cassandra's own bytes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_adapters.cassandra.codec import value_decoder
from cdc_domain.cql_bytes import serialize
from cdc_domain.cql_types import CqlType, parse_cql_type
from cdc_domain.values import Duration, UdtValue

_INTS = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}


def _millis(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def typed(cql_type: CqlType) -> st.SearchStrategy[object]:
    """Values of ``cql_type`` as the reader decodes them."""
    name = cql_type.name
    if name in _INTS:
        bits = _INTS[name]
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    native = {
        "text": st.text(),
        "ascii": st.text(alphabet=st.characters(max_codepoint=127)),
        "blob": st.binary(),
        "boolean": st.booleans(),
        "varint": st.integers(-(2**100), 2**100),
        "decimal": st.decimals(allow_nan=False, allow_infinity=False, places=4),
        "double": st.floats(allow_nan=False),
        "float": st.floats(allow_nan=False, width=32),
        "uuid": st.uuids(),
        "timeuuid": st.uuids(version=1),
        "timestamp": st.datetimes(
            min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
            max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001
            timezones=st.just(dt.UTC),
        ).map(_millis),
        "date": st.dates(),
        "time": st.times(),
        "duration": st.builds(
            Duration,
            st.integers(-(2**31), 2**31 - 1),
            st.integers(-(2**31), 2**31 - 1),
            st.integers(-(2**63), 2**63 - 1),
        ),
        "inet": st.ip_addresses().map(lambda a: ipaddress.ip_address(str(a))),
    }.get(name)
    if native is not None:
        return native
    params = cql_type.params
    if name == "list":
        return st.lists(typed(params[0]), min_size=1, max_size=4)
    if name == "set":
        return st.frozensets(typed(params[0]), min_size=1, max_size=4)
    if name == "map":
        return st.dictionaries(typed(params[0]), typed(params[1]), min_size=1, max_size=4)
    if name == "tuple":
        return st.tuples(*(typed(p) for p in params))
    raise AssertionError(f"no strategy for {cql_type}")


TYPES = [
    *(
        [
            "ascii",
            "text",
            "blob",
            "boolean",
            "tinyint",
            "smallint",
            "int",
            "bigint",
            "varint",
            "decimal",
            "double",
            "float",
        ]
    ),
    *(["uuid", "timeuuid", "timestamp", "date", "time", "duration", "inet"]),
    "frozen<list<int>>",
    "frozen<set<text>>",
    "frozen<set<int>>",
    "frozen<set<timeuuid>>",
    "frozen<map<int, text>>",
    "frozen<tuple<int, text, frozen<list<bigint>>>>",
    "frozen<map<text, frozen<tuple<int, text>>>>",
]


@pytest.mark.parametrize("spelled", TYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_reader_reads_back_what_is_serialized(spelled, data):
    cql_type = parse_cql_type(spelled, "ks")
    value = data.draw(typed(cql_type))
    assert value_decoder(cql_type)(serialize(cql_type, value)) == value


def test_a_udt_serializes_its_fields_in_declaration_order():
    udt = CqlType(
        "udt",
        (parse_cql_type("int", "ks"), parse_cql_type("text", "ks")),
        frozen=True,
        udt_name="ks.address",
        field_names=("n", "street"),
    )
    value = UdtValue((("n", 7), ("street", "main")))
    assert value_decoder(udt)(serialize(udt, value)) == value
    assert serialize(udt, {"street": "main", "n": 7}) == serialize(udt, value)


@pytest.mark.parametrize(
    ("spelled", "value", "expected"),
    [
        ("int", -1, b"\xff\xff\xff\xff"),
        ("int", 1, b"\x00\x00\x00\x01"),
        ("varint", 128, b"\x00\x80"),
        ("varint", -129, b"\xff\x7f"),
        ("decimal", Decimal("1.5"), b"\x00\x00\x00\x01\x0f"),
        ("text", "é", b"\xc3\xa9"),
        ("boolean", True, b"\x01"),
        ("date", dt.date(1970, 1, 2), b"\x80\x00\x00\x01"),
        ("timestamp", dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC), b"\0" * 6 + b"\x03\xe8"),
        ("uuid", uuid.UUID(int=1), b"\0" * 15 + b"\x01"),
        (
            "frozen<set<int>>",
            frozenset({1, -1}),
            b"\0\0\0\x02\0\0\0\x04\xff\xff\xff\xff\0\0\0\x04\0\0\0\x01",
        ),
        ("text", None, b""),
    ],
)
def test_known_values_give_cassandras_bytes(spelled, value, expected):
    assert serialize(parse_cql_type(spelled, "ks"), value) == expected
