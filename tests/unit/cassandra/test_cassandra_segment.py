from __future__ import annotations

import struct
from pathlib import Path

import pytest
from cassandra_recordings import RecordedSegment
from cassandra_segments import (
    COMPRESSORS,
    compressed_segment,
    frame,
    uncompressed_segment,
    with_version,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_adapters.cassandra.segment import (
    CommitLogEntry,
    CommitLogError,
    CorruptEntryError,
    CorruptSegmentError,
    UnsupportedSegmentError,
    iter_entries,
    parse_segment_name,
    read_cdc_index,
    read_descriptor,
    read_segment_file,
)

SEGMENT_ID = 1_700_000_000_123


def _entries(items: list) -> list[CommitLogEntry]:
    assert not [i for i in items if isinstance(i, CommitLogError)]
    return items


def _recorded_mutations(recorded: RecordedSegment) -> list[bytes]:
    items = list(iter_entries(recorded.data, limit=recorded.idx_offset))
    return [e.mutation for e in _entries(items)]


def test_recorded_descriptor(v7_basic: RecordedSegment) -> None:
    descriptor = read_descriptor(v7_basic.data)
    assert descriptor.version == 7
    assert descriptor.segment_id == v7_basic.segment_id
    assert descriptor.parameters == {}
    assert descriptor.header_size == 20
    assert descriptor.messaging_version == 12
    assert descriptor.compression is None


def test_recorded_segment_reads_without_errors(v7_basic: RecordedSegment) -> None:
    entries = _entries(list(read_segment_file(v7_basic.path, limit=v7_basic.idx_offset)))
    assert len(entries) > 10
    assert entries[0].offset == 20 + 8
    assert all(e.segment_id == v7_basic.segment_id for e in entries)
    assert all(e.messaging_version == 12 for e in entries)
    offsets = [e.offset for e in entries]
    assert offsets == sorted(offsets)
    assert entries[-1].offset + 12 + len(entries[-1].mutation) <= v7_basic.idx_offset


def test_limit_stops_at_section_boundaries(v7_basic: RecordedSegment) -> None:
    everything = _entries(list(iter_entries(v7_basic.data, limit=v7_basic.idx_offset)))
    middle = everything[len(everything) // 2].offset
    partial = _entries(list(iter_entries(v7_basic.data, limit=middle)))
    # Only whole sections below the limit: nothing at or beyond it, and a prefix of all.
    assert all(e.offset < middle for e in partial)
    assert partial == everything[: len(partial)]


def test_resume_from_an_entry_offset(v7_basic: RecordedSegment) -> None:
    everything = _entries(list(iter_entries(v7_basic.data, limit=v7_basic.idx_offset)))
    for index in (1, len(everything) // 2, len(everything) - 1):
        resumed = list(
            iter_entries(v7_basic.data, limit=v7_basic.idx_offset, start=everything[index].offset)
        )
        assert resumed == everything[index:]
    assert list(iter_entries(v7_basic.data, start=v7_basic.idx_offset)) == []


def test_file_name_must_match_header(v7_basic: RecordedSegment, tmp_path: Path) -> None:
    wrong = tmp_path / f"CommitLog-7-{v7_basic.segment_id + 1}.log"
    wrong.write_bytes(v7_basic.data)
    with pytest.raises(CorruptSegmentError, match="file name"):
        read_segment_file(wrong)


def test_garbage_named_like_a_segment(tmp_path: Path) -> None:
    garbage = tmp_path / "CommitLog-7-123.log"
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(CorruptSegmentError, match="CRC"):
        read_segment_file(garbage)
    empty = tmp_path / "CommitLog-7-124.log"
    empty.write_bytes(b"")
    with pytest.raises(CorruptSegmentError) as info:
        read_segment_file(empty)
    assert info.value.truncated


def test_unsupported_versions_and_encryption() -> None:
    segment = uncompressed_segment(SEGMENT_ID, [[b"x" * 20]], version=6)
    with pytest.raises(UnsupportedSegmentError):
        read_descriptor(segment)
    from cassandra_segments import header

    encrypted = header(SEGMENT_ID, 7, {"encCipher": "AES/CBC/PKCS5Padding"}) + b"\0" * 8
    with pytest.raises(UnsupportedSegmentError, match="encrypted"):
        list(iter_entries(encrypted))


def test_version_8_is_messaging_13(v7_basic: RecordedSegment) -> None:
    v8 = with_version(v7_basic.data, 8)
    entries = _entries(list(iter_entries(v8, limit=v7_basic.idx_offset)))
    assert {e.messaging_version for e in entries} == {13}
    assert [e.mutation for e in entries] == _recorded_mutations(v7_basic)


def test_segment_names() -> None:
    assert parse_segment_name("CommitLog-7-1795669690844.log") == (7, 1795669690844)
    assert parse_segment_name("CommitLog-7-1795669690844_cdc.idx") is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [("", None), ("12", (12, False)), ("67496\nCOMPLETED", (67496, True)), ("x", None)],
)
def test_cdc_index(tmp_path: Path, content: str, expected: tuple[int, bool] | None) -> None:
    path = tmp_path / "CommitLog-7-1_cdc.idx"
    path.write_text(content)
    index = read_cdc_index(path)
    assert ((index.offset, index.completed) if index else None) == expected
    assert read_cdc_index(tmp_path / "missing_cdc.idx") is None


@pytest.mark.parametrize("compressor", sorted(COMPRESSORS))
def test_compressed_sections(v7_basic: RecordedSegment, compressor: str) -> None:
    mutations = _recorded_mutations(v7_basic)
    sections = [mutations[i : i + 4] for i in range(0, len(mutations), 4)]
    segment, offsets = compressed_segment(SEGMENT_ID, sections, compressor)
    assert read_descriptor(segment).compression == compressor
    entries = _entries(list(iter_entries(segment)))
    assert [e.mutation for e in entries] == mutations
    assert [e.offset for e in entries] == offsets
    # The idx offset of a compressed segment counts uncompressed bytes.
    end_of_first = offsets[4] - 8
    assert [e.offset for e in iter_entries(segment, limit=end_of_first)] == offsets[:4]
    assert [e.offset for e in iter_entries(segment, start=offsets[5])] == offsets[5:]


@pytest.mark.parametrize("compressor", sorted(COMPRESSORS))
def test_corrupt_compressed_section_is_reported(compressor: str) -> None:
    mutations = [bytes([65 + i]) * 30 for i in range(4)]
    segment, offsets = compressed_segment(SEGMENT_ID, [mutations[:2], mutations[2:]], compressor)
    damaged = bytearray(segment)
    damaged[read_descriptor(segment).header_size + 8 + 4 + 3] ^= 0xFF  # in the first body
    items = list(iter_entries(bytes(damaged)))
    assert any(isinstance(i, CommitLogError) for i in items)
    expected = dict(zip(offsets, mutations, strict=True))
    assert all(expected[i.offset] == i.mutation for i in items if isinstance(i, CommitLogEntry))


# ------------------------------------------------------------------------------ corruption

MUTATIONS = [bytes([i]) * (20 + i) for i in range(12)]
SECTIONS = [MUTATIONS[0:4], MUTATIONS[4:8], MUTATIONS[8:12]]


def _clean() -> bytes:
    return uncompressed_segment(SEGMENT_ID, SECTIONS)


def _offset_of(index: int) -> int:
    segment = _clean()
    return next(e.offset for e in iter_entries(segment) if e.mutation == MUTATIONS[index])


def test_flipped_bit_in_a_mutation_costs_that_entry_only() -> None:
    damaged = bytearray(_clean())
    offset = _offset_of(5)
    damaged[offset + 8 + 3] ^= 0x10
    items = list(iter_entries(bytes(damaged)))
    errors = [i for i in items if isinstance(i, CommitLogError)]
    assert len(errors) == 1
    assert isinstance(errors[0], CorruptEntryError)
    assert errors[0].offset == offset
    assert errors[0].segment_id == SEGMENT_ID
    assert len(errors[0].raw) == len(MUTATIONS[5])
    good = [i.mutation for i in items if isinstance(i, CommitLogEntry)]
    assert good == MUTATIONS[:5] + MUTATIONS[6:]


def test_flipped_bit_in_a_size_skips_the_rest_of_its_section() -> None:
    damaged = bytearray(_clean())
    damaged[_offset_of(5) + 2] ^= 0x01
    items = list(iter_entries(bytes(damaged)))
    assert [type(i) for i in items if isinstance(i, CommitLogError)] == [CorruptEntryError]
    good = [i.mutation for i in items if isinstance(i, CommitLogEntry)]
    assert good == MUTATIONS[:5] + MUTATIONS[8:]


def test_damaged_sync_marker_resyncs_at_the_next_one() -> None:
    damaged = bytearray(_clean())
    second_marker = _offset_of(4) - 8
    damaged[second_marker + 5] ^= 0x40
    items = list(iter_entries(bytes(damaged)))
    assert [type(i) for i in items if isinstance(i, CommitLogError)] == [CorruptSegmentError]
    good = [i.mutation for i in items if isinstance(i, CommitLogEntry)]
    assert good == MUTATIONS[:4] + MUTATIONS[8:]


def test_truncated_file_reports_truncation(v7_basic: RecordedSegment) -> None:
    data = v7_basic.data
    cut = data[: v7_basic.idx_offset - 10]
    items = list(iter_entries(cut, limit=v7_basic.idx_offset))
    errors = [i for i in items if isinstance(i, CommitLogError)]
    assert len(errors) == 1
    assert isinstance(errors[0], CorruptSegmentError)
    assert errors[0].truncated
    good = [i for i in items if isinstance(i, CommitLogEntry)]
    assert 0 < len(good) < len(_recorded_mutations(v7_basic))


def test_entry_running_past_its_section() -> None:
    segment = bytearray(header_and_one_section(frame(b"a" * 40)[:-10]))
    items = list(iter_entries(bytes(segment)))
    assert len(items) == 1
    assert isinstance(items[0], CorruptEntryError)
    assert items[0].truncated


def header_and_one_section(body: bytes) -> bytes:
    from cassandra_segments import header, marker

    head = header(SEGMENT_ID)
    return head + marker(SEGMENT_ID, len(head), len(head) + 8 + len(body)) + body + b"\0" * 8


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_random_damage_never_yields_a_wrong_entry(data: st.DataObject) -> None:
    clean = _clean()
    expected = {e.offset: e.mutation for e in iter_entries(clean)}
    damaged = bytearray(clean)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(20, len(clean) - 1))
        damaged[position] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(20, len(clean)))
    for item in iter_entries(bytes(damaged[:cut]), limit=len(clean)):
        if isinstance(item, CommitLogEntry):
            assert expected.get(item.offset) == item.mutation
        else:
            assert isinstance(item, CorruptEntryError | CorruptSegmentError)


def test_zero_size_entry_ends_the_section() -> None:
    body = frame(b"q" * 16) + struct.pack(">i", 0) + b"\0" * 8
    items = list(iter_entries(header_and_one_section(body)))
    assert [i.mutation for i in items] == [b"q" * 16]
