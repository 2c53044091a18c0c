"""Build commit log segments in tests, framing real mutations the way Cassandra does.

Used for what the live server is not configured to write (compressed segments, descriptor
version 8) and for precise corruption: the entries themselves come from recorded segments.
"""

from __future__ import annotations

import json
import struct
import zlib

import lz4.block
import snappy
import zstandard

HEADER = struct.Struct(">iqH")


def _words(*values: int) -> bytes:
    return b"".join(struct.pack(">I", v & 0xFFFFFFFF) for v in values)


def header(segment_id: int, version: int = 7, parameters: dict | None = None) -> bytes:
    params = json.dumps(parameters or {}, sort_keys=True, separators=(",", ":")).encode()
    fixed = HEADER.pack(version, segment_id, len(params))
    crc = zlib.crc32(params, zlib.crc32(_words(version, segment_id, segment_id >> 32, len(params))))
    return fixed + params + struct.pack(">I", crc)


def frame(mutation: bytes) -> bytes:
    size = struct.pack(">i", len(mutation))
    size_crc = zlib.crc32(size)
    return (
        size
        + struct.pack(">I", size_crc)
        + mutation
        + struct.pack(">I", zlib.crc32(mutation, size_crc))
    )


def marker(segment_id: int, position: int, next_position: int) -> bytes:
    crc = zlib.crc32(_words(segment_id, segment_id >> 32, position))
    return struct.pack(">iI", next_position, crc)


def uncompressed_segment(segment_id: int, sections: list[list[bytes]], version: int = 7) -> bytes:
    out = bytearray(header(segment_id, version))
    for mutations in sections:
        body = b"".join(frame(m) for m in mutations)
        position = len(out)
        out += marker(segment_id, position, position + 8 + len(body)) + body
    return bytes(out + b"\0" * 8)


COMPRESSORS = {
    "LZ4Compressor": lambda data: lz4.block.compress(data),
    "SnappyCompressor": lambda data: snappy.compress(data),
    "DeflateCompressor": lambda data: zlib.compress(data),
    "ZstdCompressor": lambda data: zstandard.ZstdCompressor().compress(data),
}


def compressed_segment(
    segment_id: int, sections: list[list[bytes]], compressor: str
) -> tuple[bytes, list[int]]:
    """The segment and the stream (logical) offsets of its entries, in order."""
    parameters = {"compressionClass": compressor, "compressionParameters": {}}
    out = bytearray(header(segment_id, 7, parameters))
    logical = len(out)
    offsets = []
    for mutations in sections:
        plain = b""
        for mutation in mutations:
            offsets.append(logical + 8 + len(plain))
            plain += frame(mutation)
        packed = struct.pack(">i", len(plain)) + COMPRESSORS[compressor](plain)
        position = len(out)
        out += marker(segment_id, position, position + 8 + len(packed)) + packed
        logical += 8 + len(plain)
    return bytes(out), offsets


def with_version(segment: bytes, version: int) -> bytes:
    """The same segment under another descriptor version (header CRC recomputed)."""
    _, segment_id, size = HEADER.unpack_from(segment)
    params = json.loads(segment[HEADER.size : HEADER.size + size] or b"{}")
    return header(segment_id, version, params) + segment[HEADER.size + size + 4 :]
