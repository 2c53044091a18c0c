"""Cassandra's variable-length integers, decoded straight out of a buffer.

Every length, timestamp and TTL in a serialized mutation is a vint, so these functions run
several times per cell. They take ``(buffer, position)`` and return ``(value, new
position)`` instead of wrapping the buffer in a reader object: a tuple return is the
cheapest way to advance a cursor in CPython. Callers that are hotter still inline the
one-byte case (``b < 0x80``) before calling here.
"""

from __future__ import annotations

from cdc_domain.cql_bytes import signed_vint, unsigned_vint

__all__ = [
    "VIntError",
    "read_signed_vint",
    "read_unsigned_vint",
    "unsigned_vint_size",
    "write_signed_vint",
    "write_unsigned_vint",
]

# Number of bytes that follow the first one, indexed by the first byte: its count of
# leading one bits. A table lookup beats counting bits at run time.
_EXTRA_BYTES: tuple[int, ...] = tuple(
    next((n for n in range(8) if not (b << n) & 0x80), 8) for b in range(256)
)
# The value bits of a vint with that many extra bytes, its length prefix excluded: reading
# all its bytes as one big-endian int and masking is one step less than splitting them.
_VALUE_MASK: tuple[int, ...] = tuple((1 << (7 * extra + 8)) - 1 for extra in range(9))
_MASK64 = (1 << 64) - 1
_from_bytes = int.from_bytes  # a global name: cheaper than the attribute lookup per call


class VIntError(ValueError):
    """A vint that runs past the end of its buffer."""


def read_unsigned_vint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode the unsigned vint at ``pos``; the value is in [0, 2**64)."""
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    extra = _EXTRA_BYTES[first]
    end = pos + 1 + extra
    if end > len(buf):
        raise VIntError(f"vint at {pos} needs {extra + 1} bytes, buffer has {len(buf) - pos}")
    return _from_bytes(buf[pos:end], "big") & _VALUE_MASK[extra], end


def read_signed_vint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a zigzag-encoded vint (durations, some 5.0 lengths)."""
    raw, pos = read_unsigned_vint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def unsigned_vint_size(value: int) -> int:
    """Bytes :func:`write_unsigned_vint` uses for ``value`` (taken modulo 2**64)."""
    value &= _MASK64
    bits = value.bit_length() or 1
    return 9 if bits > 56 else (bits + 6) // 7


write_unsigned_vint = unsigned_vint
write_signed_vint = signed_vint
