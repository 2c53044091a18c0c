"""Commit log segment files: descriptor header, sync sections and entry framing.

A segment is a header followed by sync sections. Each section starts with a marker
(position of the next marker + a CRC of the segment id and the marker's own position) and
holds whole entries, each framed as ``size, crc(size), mutation, crc(size + mutation)``.
Compressed segments store each section's entries compressed after the marker; entry
offsets then count positions in the uncompressed stream, which is also what the
``_cdc.idx`` file counts (see docs/cassandra-commitlog-format.md).

Corruption is reported, not raised, once the descriptor has been read: the iterator yields
a :class:`CommitLogError` in place of what could not be read and goes on with the next
entry or section it can trust, so one flipped bit costs one entry, not a segment.
"""

from __future__ import annotations

import bisect
import json
import re
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import attrs

__all__ = [
    "CdcIndex",
    "CommitLogEntry",
    "CommitLogError",
    "CorruptEntryError",
    "CorruptSegmentError",
    "SegmentDescriptor",
    "SegmentReader",
    "UnsupportedSegmentError",
    "iter_entries",
    "parse_segment_name",
    "read_cdc_index",
    "read_descriptor",
    "read_segment_file",
]

SYNC_MARKER_SIZE = 8
_MIN_ENTRY_SIZE = 10
_HEADER_FIXED = struct.Struct(">iqH")
_INT = struct.Struct(">i")
_UINT = struct.Struct(">I")
_MARKER = struct.Struct(">iI")
_ENTRY_HEADER = struct.Struct(">iI")  # size, CRC of the size
_SEGMENT_NAME = re.compile(r"CommitLog-(\d+)-(\d+)\.log")

# Descriptor version -> messaging version the mutations in it are serialized with.
_MESSAGING_VERSIONS = {6: 10, 7: 12, 8: 13, 9: 14}


class CommitLogError(Exception):
    """Something in a commit log segment that cannot be read as written."""

    def __init__(self, message: str, *, segment_id: int | None = None, offset: int = 0) -> None:
        super().__init__(message)
        self.segment_id = segment_id
        self.offset = offset


class UnsupportedSegmentError(CommitLogError):
    """A well-formed segment this reader does not handle (encrypted, pre-4.0 version)."""


class CorruptSegmentError(CommitLogError):
    """A descriptor or sync section that fails its checks; ``truncated`` when cut short."""

    def __init__(
        self,
        message: str,
        *,
        segment_id: int | None = None,
        offset: int = 0,
        truncated: bool = False,
    ) -> None:
        super().__init__(message, segment_id=segment_id, offset=offset)
        self.truncated = truncated


class CorruptEntryError(CommitLogError):
    """One entry that fails its CRC or framing; ``raw`` keeps its bytes for a dead letter."""

    def __init__(
        self,
        message: str,
        *,
        segment_id: int | None = None,
        offset: int = 0,
        raw: bytes = b"",
        truncated: bool = False,
    ) -> None:
        super().__init__(message, segment_id=segment_id, offset=offset)
        self.raw = raw
        self.truncated = truncated


@attrs.frozen(slots=True)
class SegmentDescriptor:
    """What a segment's header says about how to read the rest of it."""

    version: int
    segment_id: int
    parameters: dict[str, Any]
    header_size: int

    @property
    def messaging_version(self) -> int:
        return _MESSAGING_VERSIONS[self.version]

    @property
    def compression(self) -> str | None:
        """The compressor's simple class name, e.g. ``LZ4Compressor``; None if uncompressed."""
        name = self.parameters.get("compressionClass")
        return str(name).rsplit(".", 1)[-1] if name else None

    @property
    def encrypted(self) -> bool:
        return "encCipher" in self.parameters


class CommitLogEntry(NamedTuple):
    """One mutation as logged: ``offset`` is where its frame starts (uncompressed stream)."""

    segment_id: int
    offset: int
    mutation: bytes
    messaging_version: int


@attrs.frozen(slots=True)
class CdcIndex:
    """A ``_cdc.idx`` file: how far the segment is durable, and whether it is finished."""

    offset: int
    completed: bool


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(descriptor version, segment id) of a ``CommitLog-<v>-<id>.log`` name, else None."""
    match = _SEGMENT_NAME.fullmatch(name)
    return (int(match[1]), int(match[2])) if match else None


def read_cdc_index(path: Path) -> CdcIndex | None:
    """The index file's content; None while Cassandra is rewriting it (empty or partial)."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    lines = text.split()
    if not lines or not lines[0].isdigit():
        return None
    return CdcIndex(int(lines[0]), len(lines) > 1 and lines[1] == "COMPLETED")


def _crc_words(*words: int) -> int:
    return zlib.crc32(b"".join(_UINT.pack(w & 0xFFFFFFFF) for w in words))


def read_descriptor(data: bytes | memoryview) -> SegmentDescriptor:
    """Parse and check the header at the start of ``data``.

    Raises :class:`CorruptSegmentError` when the header is cut short or fails its CRC, and
    :class:`UnsupportedSegmentError` for versions before 4.0's.
    """
    if len(data) < _HEADER_FIXED.size + 4:
        raise CorruptSegmentError("segment shorter than its header", truncated=True)
    version, segment_id, params_size = _HEADER_FIXED.unpack_from(data)
    end = _HEADER_FIXED.size + params_size
    if len(data) < end + 4:
        raise CorruptSegmentError(
            "segment shorter than its header", segment_id=segment_id, truncated=True
        )
    params = bytes(data[_HEADER_FIXED.size : end])
    expected = zlib.crc32(params, _crc_words(version, segment_id, segment_id >> 32, params_size))
    if _UINT.unpack_from(data, end)[0] != expected:
        raise CorruptSegmentError("descriptor CRC mismatch", segment_id=segment_id)
    if version not in _MESSAGING_VERSIONS or version < 7:
        raise UnsupportedSegmentError(
            f"commit log descriptor version {version} (4.0+ writes 7 and later)",
            segment_id=segment_id,
        )
    try:
        parameters = json.loads(params.decode("utf-8")) if params else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptSegmentError(
            f"descriptor parameters are not JSON: {exc}", segment_id=segment_id
        ) from exc
    return SegmentDescriptor(version, segment_id, parameters, end + 4)


def _decompressor(name: str) -> Callable[[bytes, int], bytes]:
    """The function turning a section's compressor output back into ``length`` bytes."""
    if name == "LZ4Compressor":
        import lz4.block

        # Cassandra prefixes the raw block with its length, little-endian: lz4's own format.
        return lambda data, length: lz4.block.decompress(data)
    if name == "SnappyCompressor":
        import snappy

        return lambda data, length: snappy.uncompress(data)
    if name == "DeflateCompressor":
        return lambda data, length: zlib.decompress(data, bufsize=max(length, 1))
    if name == "ZstdCompressor":
        import zstandard

        decompressor = zstandard.ZstdDecompressor()
        return lambda data, length: decompressor.decompress(data, max_output_size=length)
    raise UnsupportedSegmentError(f"commit log compressor {name}")


class _Section(NamedTuple):
    """Entries' bytes, where they sit in the uncompressed stream, and where the section ends.

    ``logical_end``/``physical_end`` are the next marker's stream and file positions: a
    boundary a later read can start from without walking the chain again.
    """

    data: bytes | memoryview
    data_start: int  # index in ``data`` of the first entry
    data_end: int
    logical_start: int  # stream position of data[data_start]
    logical_end: int
    physical_end: int


def _marker_crc(segment_id: int, position: int) -> int:
    return _crc_words(segment_id, segment_id >> 32, position)


def _find_next_marker(
    data: bytes | memoryview, origin: int, segment_id: int, start: int, limit: int
) -> int | None:
    """The first file position after ``start`` holding a valid sync marker, if any.

    A marker's CRC covers its own position, so a match at a wrong place is a 1 in 2**32
    accident; that makes it safe to scan past a damaged marker for the next good one.
    """
    for pos in range(start + 1, limit - SYNC_MARKER_SIZE + 1):
        next_pos, crc = _MARKER.unpack_from(data, pos - origin)
        if pos < next_pos <= limit and crc == _marker_crc(segment_id, pos):
            return pos
    return None


def _sections(
    data: bytes | memoryview,
    descriptor: SegmentDescriptor,
    limit: int | None,
    origin: int = 0,
    boundary: tuple[int, int] | None = None,
) -> Iterator[_Section | CommitLogError]:
    """The sync sections that end at or before ``limit`` (a stream position).

    ``data`` holds the file from position ``origin`` on; ``boundary`` is the (stream, file)
    position of the marker to start from, by default the one after the header.
    """
    segment_id = descriptor.segment_id
    decompress = _decompressor(descriptor.compression) if descriptor.compression else None
    stream_end = sys.maxsize if limit is None else limit
    file_end = origin + len(data)
    physical_end = file_end if decompress else min(file_end, stream_end)
    # pos: file position of the current marker; logical: its stream position.
    logical, pos = boundary or (descriptor.header_size, descriptor.header_size)
    while logical < stream_end:
        remaining = physical_end - pos
        if remaining < SYNC_MARKER_SIZE:
            if remaining > 0 or limit is not None:
                yield CorruptSegmentError(
                    f"segment ends at {file_end}, before the idx offset {limit}",
                    segment_id=segment_id,
                    offset=logical,
                    truncated=True,
                )
            return
        next_pos, crc = _MARKER.unpack_from(data, pos - origin)
        if crc == _marker_crc(segment_id, pos) and next_pos > pos:
            if next_pos > file_end:
                if decompress is None and next_pos > stream_end:
                    return  # the section is still being written; idx has not reached it
                yield CorruptSegmentError(
                    f"section at {pos} runs to {next_pos}, past the end of the file",
                    segment_id=segment_id,
                    offset=logical,
                    truncated=True,
                )
                return
            if decompress is None:
                if next_pos > stream_end:
                    return
                body = pos + SYNC_MARKER_SIZE
                yield _Section(data, body - origin, next_pos - origin, body, next_pos, next_pos)
                pos = logical = next_pos
                continue
            section = _decompress_section(
                data, origin, pos, next_pos, logical, decompress, segment_id
            )
            if isinstance(section, CommitLogError):
                yield section
                return  # stream positions after this section are unknown
            logical = section.logical_end
            if logical > stream_end:
                return
            yield section
            pos = next_pos
            continue
        if next_pos == 0 and crc == 0:
            return  # zeroed: the writer has not got here
        yield CorruptSegmentError(
            f"bad sync marker at {pos} (next={next_pos})", segment_id=segment_id, offset=logical
        )
        if decompress is not None:
            return
        found = _find_next_marker(data, origin, segment_id, pos, physical_end)
        if found is None:
            return
        pos = logical = found


def _decompress_section(
    data: bytes | memoryview,
    origin: int,
    pos: int,
    next_pos: int,
    logical: int,
    decompress: Callable[[bytes, int], bytes],
    segment_id: int,
) -> _Section | CommitLogError:
    body = pos + SYNC_MARKER_SIZE
    if next_pos - body < 4:
        return CorruptSegmentError(
            f"compressed section at {pos} too short", segment_id=segment_id, offset=logical
        )
    length = _INT.unpack_from(data, body - origin)[0]
    try:
        plain = decompress(bytes(data[body + 4 - origin : next_pos - origin]), length)
    except Exception as exc:  # each codec has its own error types; all mean the same here
        return CorruptSegmentError(
            f"section at {pos} does not decompress: {exc}", segment_id=segment_id, offset=logical
        )
    if len(plain) != length:
        return CorruptSegmentError(
            f"section at {pos} decompressed to {len(plain)} bytes, expected {length}",
            segment_id=segment_id,
            offset=logical,
        )
    start = logical + SYNC_MARKER_SIZE
    return _Section(plain, 0, length, start, start + length, next_pos)


def _section_entries(
    section: _Section, segment_id: int, messaging_version: int, start: int
) -> Iterator[CommitLogEntry | CommitLogError]:
    data, pos, end = section.data, section.data_start, section.data_end
    shift = section.logical_start - section.data_start
    unpack_header = _ENTRY_HEADER.unpack_from
    unpack_uint = _UINT.unpack_from
    crc32 = zlib.crc32
    new_entry = tuple.__new__  # CommitLogEntry(...) minus a Python-level __new__ call
    while end - pos >= 8:
        size, stored_size_crc = unpack_header(data, pos)
        if size == 0:
            return  # zero padding ends the section
        offset = pos + shift
        size_crc = crc32(data[pos : pos + 4])
        if stored_size_crc != size_crc:
            yield CorruptEntryError(
                "entry size CRC mismatch; rest of section skipped",
                segment_id=segment_id,
                offset=offset,
                raw=bytes(data[pos:end]),
            )
            return
        body = pos + 8
        stop = body + size
        if size < _MIN_ENTRY_SIZE or stop + 4 > end:
            yield CorruptEntryError(
                f"entry of {size} bytes does not fit its section",
                segment_id=segment_id,
                offset=offset,
                raw=bytes(data[pos:end]),
                truncated=True,
            )
            return
        pos = stop + 4
        if offset < start:
            continue
        mutation = bytes(data[body:stop])
        if unpack_uint(data, stop)[0] != crc32(mutation, size_crc):
            yield CorruptEntryError(
                "entry CRC mismatch", segment_id=segment_id, offset=offset, raw=mutation
            )
            continue
        yield new_entry(CommitLogEntry, (segment_id, offset, mutation, messaging_version))
    if end - pos >= 4 and _INT.unpack_from(data, pos)[0] != 0:
        yield CorruptEntryError(
            "entry header cut short",
            segment_id=segment_id,
            offset=pos + shift,
            truncated=True,
        )


def iter_entries(
    data: bytes | memoryview,
    *,
    limit: int | None = None,
    start: int = 0,
    expected_id: int | None = None,
) -> Iterator[CommitLogEntry | CommitLogError]:
    """Entries of the segment in ``data``, up to stream position ``limit`` (the idx offset).

    ``start`` resumes reading: entries before it are skipped (pass an entry offset or a
    section boundary such as a previous ``limit``). Problems with the descriptor are raised
    here, before iteration, because nothing after it can be trusted; later ones are
    yielded (see the module doc).
    """
    descriptor = read_descriptor(data)
    if expected_id is not None and descriptor.segment_id != expected_id:
        raise CorruptSegmentError(
            f"header says segment {descriptor.segment_id}, file name says {expected_id}",
            segment_id=expected_id,
        )
    if descriptor.encrypted:
        raise UnsupportedSegmentError(
            "encrypted commit log segments", segment_id=descriptor.segment_id
        )
    if descriptor.compression:
        _decompressor(descriptor.compression)  # unknown compressors fail now, not midway
    return _entries(data, descriptor, limit, start)


def _entries(
    data: bytes | memoryview, descriptor: SegmentDescriptor, limit: int | None, start: int
) -> Iterator[CommitLogEntry | CommitLogError]:
    version = descriptor.messaging_version
    for section in _sections(data, descriptor, limit):
        if isinstance(section, CommitLogError):
            yield section
            continue
        if section.logical_end <= start:
            continue
        yield from _section_entries(section, descriptor.segment_id, version, start)


def read_segment_file(
    path: Path, *, limit: int | None = None, start: int = 0
) -> Iterator[CommitLogEntry | CommitLogError]:
    """:func:`iter_entries` over a segment file, checking the id in its name.

    Only the bytes up to ``limit`` are read for an uncompressed segment; a compressed one
    is read whole, since its idx offset counts uncompressed bytes.
    """
    parsed = parse_segment_name(path.name)
    with path.open("rb") as handle:
        head = _read_header(handle)
        descriptor = read_descriptor(head)
        whole = limit is None or descriptor.compression is not None
        data = head + handle.read(-1 if whole else max(0, (limit or 0) - len(head)))
    return iter_entries(data, limit=limit, start=start, expected_id=parsed[1] if parsed else None)


def _read_header(handle: BinaryIO) -> bytes:
    head = handle.read(_HEADER_FIXED.size)
    if len(head) == _HEADER_FIXED.size:
        head += handle.read(_HEADER_FIXED.unpack(head)[2] + 4)
    return head


class SegmentReader:
    """One segment file read incrementally, remembering where its sections start.

    A consumer following a growing segment asks for the entries from where it stopped up
    to the new idx offset; only the bytes from the section holding that position are read
    from disk (never past the offset, for an uncompressed segment), and the marker chain is
    not walked again from the header. The memory kept is two integers per section.
    """

    def __init__(self, path: Path) -> None:
        parsed = parse_segment_name(path.name)
        self.path = path
        self.expected_id = parsed[1] if parsed else None
        self._descriptor: SegmentDescriptor | None = None
        self._logical: list[int] = []  # stream positions of known markers, ascending
        self._physical: list[int] = []  # their file positions

    def descriptor(self) -> SegmentDescriptor:
        """The checked header (read once); raises :class:`CommitLogError` or ``OSError``."""
        if self._descriptor is None:
            with self.path.open("rb") as handle:
                descriptor = read_descriptor(_read_header(handle))
            if self.expected_id is not None and descriptor.segment_id != self.expected_id:
                raise CorruptSegmentError(
                    f"header says segment {descriptor.segment_id},"
                    f" file name says {self.expected_id}",
                    segment_id=self.expected_id,
                )
            if descriptor.encrypted:
                raise UnsupportedSegmentError(
                    "encrypted commit log segments", segment_id=descriptor.segment_id
                )
            if descriptor.compression:
                _decompressor(descriptor.compression)
            self._descriptor = descriptor
            self._logical.append(descriptor.header_size)
            self._physical.append(descriptor.header_size)
        return self._descriptor

    def entries(self, start: int, limit: int) -> Iterator[CommitLogEntry | CommitLogError]:
        """Entries at stream positions ``>= start`` in the sections ending by ``limit``.

        Raises like :meth:`descriptor` before the first item; the file is read when the
        iteration starts.
        """
        descriptor = self.descriptor()
        known = max(0, bisect.bisect_right(self._logical, start) - 1)
        boundary = (self._logical[known], self._physical[known])
        return self._entries(descriptor, boundary, start, limit)

    def _entries(
        self, descriptor: SegmentDescriptor, boundary: tuple[int, int], start: int, limit: int
    ) -> Iterator[CommitLogEntry | CommitLogError]:
        origin = boundary[1]
        with self.path.open("rb") as handle:
            handle.seek(origin)
            data = handle.read(-1 if descriptor.compression else max(0, limit - origin))
        version = descriptor.messaging_version
        for section in _sections(data, descriptor, limit, origin, boundary):
            if isinstance(section, CommitLogError):
                yield section
                continue
            self._remember(section.logical_end, section.physical_end)
            if section.logical_end <= start:
                continue
            yield from _section_entries(section, descriptor.segment_id, version, start)

    def _remember(self, logical: int, physical: int) -> None:
        if logical > self._logical[-1]:
            self._logical.append(logical)
            self._physical.append(physical)
