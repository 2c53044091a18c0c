from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_adapters.cassandra.vint import (
    VIntError,
    read_signed_vint,
    read_unsigned_vint,
    unsigned_vint_size,
    write_signed_vint,
    write_unsigned_vint,
)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x80"),
        (16383, b"\xbf\xff"),
        (16384, b"\xc0\x40\x00"),
        (2**56 - 1, b"\xfe" + b"\xff" * 7),
        (2**56, b"\xff\x01" + b"\x00" * 7),
        (2**64 - 1, b"\xff" * 9),
    ],
)
def test_known_encodings(value: int, encoded: bytes) -> None:
    assert write_unsigned_vint(value) == encoded
    assert read_unsigned_vint(encoded, 0) == (value, len(encoded))
    assert read_unsigned_vint(memoryview(b"xx" + encoded), 2) == (value, len(encoded) + 2)


def test_negative_values_take_nine_bytes() -> None:
    assert write_unsigned_vint(-1) == b"\xff" * 9
    assert unsigned_vint_size(-(2**63)) == 9


@pytest.mark.parametrize(("value", "encoded"), [(0, b"\x00"), (-1, b"\x01"), (1, b"\x02")])
def test_signed_zigzag(value: int, encoded: bytes) -> None:
    assert write_signed_vint(value) == encoded
    assert read_signed_vint(encoded, 0) == (value, 1)


@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=3))
def test_unsigned_round_trip(value: int, tail: bytes) -> None:
    encoded = write_unsigned_vint(value)
    assert len(encoded) == unsigned_vint_size(value)
    assert read_unsigned_vint(encoded + tail, 0) == (value, len(encoded))


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_signed_round_trip(value: int) -> None:
    encoded = write_signed_vint(value)
    assert read_signed_vint(encoded, 0) == (value, len(encoded))


def test_truncated_vint_is_an_error() -> None:
    with pytest.raises(VIntError):
        read_unsigned_vint(b"\xc0\x40", 0)
