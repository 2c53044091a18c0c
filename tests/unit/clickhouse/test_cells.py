"""Cell strings order as Cassandra ranks versions (no server needed): the value part of
a fixed-width type is exactly the hex of its serialized bytes, and whole cells compare
as :func:`~cdc_domain.reconciliation.cell_rank` does."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_adapters.clickhouse.cells import cell_codec, expiry_text, stamp
from cdc_adapters.clickhouse.column_types import ServerFeatures
from cdc_domain.cql_types import parse_cql_type
from cdc_domain.reconciliation import cell_rank, value_bytes

OLD, MODERN = ServerFeatures.parse("18.16.1"), ServerFeatures.parse("26.9.2.1")
UTC = dt.UTC
INTEGERS = {
    "tinyint": st.integers(-(2**7), 2**7 - 1),
    "smallint": st.integers(-(2**15), 2**15 - 1),
    "int": st.integers(-(2**31), 2**31 - 1),
    "bigint": st.integers(-(2**63), 2**63 - 1),
}
FIXED = {
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "boolean": st.booleans(),
    "uuid": st.uuids(),
    "timeuuid": st.uuids(version=1),
    "time": st.times(),
    "timestamp": st.datetimes(
        min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=dt.datetime(2299, 12, 31),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    "date": st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2299, 12, 31)),
}


@pytest.mark.parametrize("features", [OLD, MODERN], ids=["18.16", "modern"])
@pytest.mark.parametrize("name", sorted(FIXED))
@given(data=st.data())
def test_a_fixed_width_value_is_its_serialized_bytes(features, name, data):
    value = data.draw(FIXED[name])
    cql_type = parse_cql_type(name)
    codec = cell_codec(cql_type, features)
    assert codec.suffix(value) == value_bytes(cql_type, value).hex()


@pytest.mark.parametrize("name", sorted(INTEGERS))
@given(data=st.data())
def test_integers_of_every_width_order_as_their_serialized_bytes(name, data):
    """All integers are written as 64-bit: the same order as Cassandra's bytes."""
    a, b = data.draw(INTEGERS[name]), data.draw(INTEGERS[name])
    cql_type = parse_cql_type(name)
    codec = cell_codec(cql_type, OLD)
    assert (codec.suffix(a) < codec.suffix(b)) == (
        value_bytes(cql_type, a) < value_bytes(cql_type, b)
    )
    assert int(codec.suffix(a), 16) == a % 2**64


CASES = {
    "text": st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=5),
    "int": st.integers(-3, 3),
    "varint": st.integers(-(2**70), 2**70),
    "frozen<list<int>>": st.lists(st.integers(-2, 2), max_size=3),
}
EXPIRIES = [None, dt.datetime(2030, 1, 1, tzinfo=UTC), dt.datetime(2031, 1, 1, tzinfo=UTC)]


def _cell(cql_type, features, ts, deleted, expires, value):
    head = stamp(ts)
    if deleted:
        return head + "2"
    codec = cell_codec(cql_type, features)
    kind = "0" if expires is None else "1" + expiry_text(expires)
    return head + kind + codec.suffix(value)


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_cells_compare_as_cassandra_ranks_versions(name, data):
    """Stored unescaped, as the server holds them (the TSV escapes are for transport:
    they never change a byte of text a value can hold here)."""
    cql_type = parse_cql_type(name)
    versions = [
        (
            data.draw(st.sampled_from([-5, 0, 7])),
            data.draw(st.booleans()),
            data.draw(st.sampled_from(EXPIRIES)),
            data.draw(CASES[name]),
        )
        for _ in range(2)
    ]
    cells, ranks = [], []
    for ts, deleted, expires, value in versions:
        cells.append(_cell(cql_type, MODERN, ts, deleted, expires, value).encode())
        raw = b"" if deleted else value_bytes(cql_type, value)
        ranks.append(
            cell_rank(ts, deleted=deleted, expires_at=None if deleted else expires, value=raw)
        )
    assert (cells[0] < cells[1]) == (ranks[0] < ranks[1])
    assert (cells[0] == cells[1]) == (ranks[0] == ranks[1])


def test_a_timestamp_outside_64_bits_is_rejected():
    from cdc_adapters.clickhouse.column_types import RejectedValueError

    with pytest.raises(RejectedValueError):
        stamp(2**63)


def test_uuid_parts_are_its_hex():
    value = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")
    assert cell_codec(parse_cql_type("uuid"), OLD).suffix(value) == value.hex
