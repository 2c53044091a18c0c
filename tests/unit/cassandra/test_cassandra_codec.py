"""Value decoding, cross-checked against cassandra-driver's own serializers."""

from __future__ import annotations

import datetime as dt
import ipaddress
import pickle
import uuid
from decimal import Decimal
from typing import Any

import pytest
from cassandra import cqltypes
from cassandra.util import Duration as DriverDuration
from hypothesis import given
from hypothesis import strategies as st

from cdc_adapters.cassandra.codec import (
    ValueDecodeError,
    counter_shards,
    counter_total,
    key_decoder,
    value_decoder,
)
from cdc_domain.cql_types import CqlType, parse_cql_type
from cdc_domain.values import Duration, UdtValue

PROTOCOL = 4
UTC = dt.UTC


def _driver(type_spec: str) -> Any:
    return cqltypes.lookup_casstype(type_spec)


def _decode(cql: str, raw: bytes) -> Any:
    return value_decoder(parse_cql_type(cql))(raw)


@pytest.mark.parametrize(
    ("cql", "driver", "value"),
    [
        ("int", "Int32Type", -(2**31)),
        ("bigint", "LongType", 2**63 - 1),
        ("smallint", "ShortType", -32768),
        ("tinyint", "ByteType", 127),
        ("varint", "IntegerType", -(10**40)),
        ("boolean", "BooleanType", False),
        ("double", "DoubleType", -1.5e300),
        ("text", "UTF8Type", "grüße ✓ 𝄞"),
        ("ascii", "AsciiType", "plain"),
        ("blob", "BytesType", b"\x00\xff"),
        ("uuid", "UUIDType", uuid.UUID("123e4567-e89b-12d3-a456-426614174000")),
        ("inet", "InetAddressType", "10.1.2.3"),
        ("inet", "InetAddressType", "2001:db8::1"),
        ("decimal", "DecimalType", Decimal("-123.4500")),
        ("decimal", "DecimalType", Decimal("1E+10")),
    ],
)
def test_native_values(cql: str, driver: str, value: Any) -> None:
    decoded = _decode(cql, _driver(driver).serialize(value, PROTOCOL))
    if cql == "inet":
        assert decoded == ipaddress.ip_address(value)
    else:
        assert decoded == value
        assert type(decoded) is type(value)


def test_time_keeps_microseconds_and_truncates_nanoseconds() -> None:
    nanos = ((13 * 60 + 14) * 60 + 15) * 10**9 + 123_456_789
    assert _decode("time", nanos.to_bytes(8, "big")) == dt.time(13, 14, 15, 123_456)
    with pytest.raises(ValueDecodeError):
        _decode("time", (86_400 * 10**9).to_bytes(8, "big"))


@given(st.binary(min_size=16, max_size=16))
def test_uuids_are_what_the_uuid_module_builds(raw: bytes) -> None:
    decoded = _decode("timeuuid", raw)
    expected = uuid.UUID(bytes=raw)
    assert type(decoded) is uuid.UUID
    assert (decoded, hash(decoded), decoded.is_safe) == (expected, hash(expected), expected.is_safe)
    assert pickle.loads(pickle.dumps(decoded)) == expected
    with pytest.raises(TypeError):
        decoded.int = 0


def test_timestamps_and_dates() -> None:
    ms = 1_704_164_645_678
    assert _decode("timestamp", ms.to_bytes(8, "big", signed=True)) == dt.datetime(
        2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC
    )
    assert _decode("timestamp", (-1).to_bytes(8, "big", signed=True)) == dt.datetime(
        1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC
    )
    too_far = (2**62).to_bytes(8, "big")
    assert _decode("timestamp", too_far) == 2**62
    assert _decode("date", (2**31).to_bytes(4, "big")) == dt.date(1970, 1, 1)
    assert _decode("date", (2**31 + 19782).to_bytes(4, "big")) == dt.date(2024, 2, 29)
    assert _decode("date", (0).to_bytes(4, "big")) == -(2**31)
    assert _decode("date", (2**32 - 1).to_bytes(4, "big")) == 2**31 - 1


def test_float_and_duration() -> None:
    assert _decode("float", cqltypes.FloatType.serialize(-0.25, PROTOCOL)) == -0.25
    raw = cqltypes.DurationType.serialize(DriverDuration(-1, 2, -(2**62)), PROTOCOL)
    assert _decode("duration", raw) == Duration(-1, 2, -(2**62))


@pytest.mark.parametrize(
    "cql", ["int", "bigint", "uuid", "timestamp", "date", "decimal", "inet", "list<int>"]
)
def test_empty_values_are_none(cql: str) -> None:
    assert _decode(cql, b"") is None


def test_empty_strings_and_blobs_stay_empty() -> None:
    assert _decode("text", b"") == ""
    assert _decode("ascii", b"") == ""
    assert _decode("blob", b"") == b""


def test_collections() -> None:
    raw = _driver("ListType(Int32Type)").serialize([1, 2, 3], PROTOCOL)
    assert _decode("frozen<list<int>>", raw) == [1, 2, 3]
    raw = _driver("SetType(UTF8Type)").serialize({"a", "b"}, PROTOCOL)
    assert _decode("frozen<set<text>>", raw) == frozenset({"a", "b"})
    raw = _driver("MapType(UTF8Type, Int32Type)").serialize({"a": 1}, PROTOCOL)
    assert _decode("frozen<map<text, int>>", raw) == {"a": 1}
    raw = _driver("TupleType(Int32Type, UTF8Type)").serialize((7, None), PROTOCOL)
    assert _decode("tuple<int, text>", raw) == (7, None)


def test_nested_collections_become_hashable_as_keys() -> None:
    raw = _driver("SetType(ListType(Int32Type))").serialize([[1, 2], [3]], PROTOCOL)
    assert _decode("frozen<set<frozen<list<int>>>>", raw) == frozenset({(1, 2), (3,)})
    inner = _driver("MapType(Int32Type, Int32Type)").serialize({1: 2}, PROTOCOL)
    assert key_decoder(parse_cql_type("frozen<map<int, int>>"))(inner) == ((1, 2),)
    raw = _driver("MapType(ListType(Int32Type), UTF8Type)").serialize({(1, 2): "x"}, PROTOCOL)
    assert _decode("frozen<map<frozen<list<int>>, text>>", raw) == {(1, 2): "x"}


def _udt(fields: list[tuple[str, str]]) -> CqlType:
    return CqlType(
        "udt",
        params=tuple(parse_cql_type(t) for _, t in fields),
        frozen=True,
        udt_name="address",
        field_names=tuple(n for n, _ in fields),
    )


def test_udt_with_missing_trailing_fields() -> None:
    udt = _udt([("street", "text"), ("number", "int"), ("zip", "text")])
    raw = (4).to_bytes(4, "big") + b"Main" + (-1).to_bytes(4, "big", signed=True)
    assert value_decoder(udt)(raw) == UdtValue(
        (("street", "Main"), ("number", None), ("zip", None))
    )
    with pytest.raises(ValueDecodeError):
        value_decoder(CqlType("udt", udt_name="unresolved"))


def test_vectors() -> None:
    raw = b"".join(cqltypes.FloatType.serialize(v, PROTOCOL) for v in (1.0, -2.5, 3.25))
    assert _decode("vector<float, 3>", raw) == [1.0, -2.5, 3.25]
    raw = b"".join(cqltypes.LongType.serialize(v, PROTOCOL) for v in (1, 2))
    assert _decode("vector<bigint, 2>", raw) == [1, 2]
    raw = b"\x01a\x02bc"  # variable-size elements carry a vint length each
    assert _decode("vector<text, 2>", raw) == ["a", "bc"]


def test_counter_context() -> None:
    counter_id = uuid.uuid4().bytes
    raw = (
        (1).to_bytes(2, "big")
        + (-32768).to_bytes(2, "big", signed=True)
        + counter_id
        + (7).to_bytes(8, "big")
        + (42).to_bytes(8, "big")
    )
    assert counter_shards(raw) == [(counter_id, 7, 42)]
    assert counter_total(raw) == 42
    with pytest.raises(ValueDecodeError):
        counter_shards(raw[:-1])


@given(st.lists(st.integers(-(2**31), 2**31 - 1) | st.none(), max_size=20))
def test_list_of_int_round_trip(values: list[int | None]) -> None:
    raw = _driver("ListType(Int32Type)").serialize(values, PROTOCOL)
    assert _decode("frozen<list<int>>", raw) == values


@given(st.dictionaries(st.text(), st.decimals(allow_nan=False, allow_infinity=False)))
def test_map_of_decimal_round_trip(values: dict[str, Decimal]) -> None:
    raw = _driver("MapType(UTF8Type, DecimalType)").serialize(values, PROTOCOL)
    decoded = _decode("frozen<map<text, decimal>>", raw)
    assert decoded == values
    assert {k: str(v) for k, v in decoded.items()} == {k: str(v) for k, v in values.items()}


@given(st.integers())
def test_varint_round_trip(value: int) -> None:
    assert _decode("varint", cqltypes.IntegerType.serialize(value, PROTOCOL)) == value


@given(st.floats(allow_nan=False))
def test_double_round_trip(value: float) -> None:
    assert _decode("double", cqltypes.DoubleType.serialize(value, PROTOCOL)) == value


@given(st.dates())
def test_date_round_trip(value: dt.date) -> None:
    assert _decode("date", cqltypes.SimpleDateType.serialize(value, PROTOCOL)) == value


@given(st.times())
def test_time_round_trip(value: dt.time) -> None:
    assert _decode("time", cqltypes.TimeType.serialize(value, PROTOCOL)) == value
