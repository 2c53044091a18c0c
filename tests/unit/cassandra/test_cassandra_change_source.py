"""The change source over a cdc_raw directory built from real recorded mutations."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import attrs
import pytest
from cassandra_recordings import RecordedSegment
from cassandra_segments import uncompressed_segment

from cdc_adapters.cassandra.change_source import BOUNDARY, CassandraChangeSource
from cdc_adapters.cassandra.entry_decoder import EntryDecoder
from cdc_adapters.cassandra.schema_catalog import SchemaCatalog
from cdc_adapters.cassandra.segment import CommitLogEntry, iter_entries
from cdc_domain.dead_letters import FailureReason
from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.ports import ChangeBatch, ChangeSource, SourceStorage, StorageReporting
from cdc_domain.schema import TableSchema

FIRST = 1_700_000_000_000
CAPTURED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _mutations(recorded: RecordedSegment) -> list[bytes]:
    """The recorded entries that give events, in log order."""
    decoder = EntryDecoder(SchemaCatalog(schemas=recorded.schemas.values()))
    found = []
    for entry in iter_entries(recorded.data, limit=recorded.idx_offset):
        assert isinstance(entry, CommitLogEntry)
        if decoder.decode(entry, CAPTURED).events:
            found.append(entry.mutation)
    return found


@pytest.fixture(scope="module")
def mutations(v7_basic: RecordedSegment) -> list[bytes]:
    return _mutations(v7_basic)


class CdcRaw:
    """A cdc_raw directory the test writes segments and idx files into."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def log(self, segment_id: int) -> Path:
        return self.path / f"CommitLog-7-{segment_id}.log"

    def idx(self, segment_id: int) -> Path:
        return self.path / f"CommitLog-7-{segment_id}_cdc.idx"

    def write(
        self,
        segment_id: int,
        sections: list[list[bytes]],
        *,
        durable: int | None = None,
        completed: bool = True,
    ) -> list[int]:
        """Write a segment; its idx covers the first ``durable`` sections (default all).
        Returns the section boundaries (marker positions, then the end)."""
        data = uncompressed_segment(segment_id, sections)
        self.log(segment_id).write_bytes(data)
        boundaries = _boundaries(data, len(sections))
        offset = boundaries[len(sections) if durable is None else durable]
        self.set_idx(segment_id, offset, completed=completed)
        return boundaries

    def set_idx(self, segment_id: int, offset: int, *, completed: bool) -> None:
        self.idx(segment_id).write_text(f"{offset}\nCOMPLETED" if completed else str(offset))


def _boundaries(data: bytes, count: int) -> list[int]:
    position = 20
    found = [position]
    for _ in range(count):
        position = int.from_bytes(data[position : position + 4], "big")
        found.append(position)
    return found


@pytest.fixture
def cdc_raw(tmp_path: Path) -> CdcRaw:
    directory = tmp_path / "cdc_raw"
    directory.mkdir()
    return CdcRaw(directory)


def _source(
    recorded: RecordedSegment, cdc_raw: CdcRaw, schemas: list[TableSchema] | None = None, **kw
) -> CassandraChangeSource:
    catalog = SchemaCatalog(schemas=recorded.schemas.values() if schemas is None else schemas)
    return CassandraChangeSource(
        partition_id="node1", cdc_raw_dir=cdc_raw.path, schemas=catalog, **kw
    )


async def _drain(
    source: ChangeSource, after: SourcePosition | None = None, batch: int = 1000
) -> tuple[list[ChangeEvent], list, SourcePosition | None, list[ChangeBatch]]:
    events, failures, batches = [], [], []
    for _ in range(1000):
        result = await source.read(after, batch)
        if result.end is None:
            break
        assert after is None or result.end > after
        events += result.events
        failures += result.failures
        batches.append(result)
        after = result.end
    return events, failures, after, batches


async def test_reads_every_segment_in_id_order(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    cdc_raw.write(FIRST + 1, [mutations[3:]])
    cdc_raw.write(FIRST, [mutations[:2], mutations[2:3]])
    source = _source(v7_basic, cdc_raw)
    assert isinstance(source, ChangeSource)
    events, failures, end, _ = await _drain(source)
    assert not failures
    assert [e.position.segment_id for e in events[:3]] == [FIRST] * 3
    assert {e.position.segment_id for e in events[3:]} == {FIRST + 1}
    positions = [e.position for e in events]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert end == SourcePosition(FIRST + 1, end.offset, BOUNDARY)
    assert (await source.read(end, 10)).end is None
    assert source.stats.entries_read == len(mutations)


async def test_resuming_anywhere_skips_exactly_what_was_read(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    cdc_raw.write(FIRST, [mutations[:5], mutations[5:]])
    source = _source(v7_basic, cdc_raw)
    everything, _, _, _ = await _drain(source)
    for index, event in enumerate(everything):
        rest, _, _, _ = await _drain(_source(v7_basic, cdc_raw), event.position)
        assert [e.event_id for e in rest] == [e.event_id for e in everything[index + 1 :]]
    one_by_one, _, _, batches = await _drain(source, batch=1)
    assert [e.event_id for e in one_by_one] == [e.event_id for e in everything]
    assert all(len(b.events) <= 1 for b in batches)


async def test_a_growing_segment_is_read_up_to_its_idx_and_waited_for(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    boundaries = cdc_raw.write(
        FIRST, [mutations[:3], mutations[3:6], mutations[6:]], durable=1, completed=False
    )
    cdc_raw.write(FIRST + 1, [mutations[:1]])
    data = bytearray(cdc_raw.log(FIRST).read_bytes())
    data[boundaries[1] + 8 :] = b"\xff" * (len(data) - boundaries[1] - 8)  # not durable yet
    cdc_raw.log(FIRST).write_bytes(bytes(data))
    source = _source(v7_basic, cdc_raw)
    events, failures, end, _ = await _drain(source)
    assert not failures  # nothing past the idx offset was read
    assert {e.position.segment_id for e in events} == {FIRST}
    assert end == SourcePosition(FIRST, boundaries[1], BOUNDARY)
    # Cassandra syncs two more sections; the next segment waits for COMPLETED.
    cdc_raw.write(FIRST, [mutations[:3], mutations[3:6], mutations[6:]], durable=3, completed=False)
    more, _, end, _ = await _drain(source, end)
    assert {e.position.segment_id for e in more} == {FIRST}
    assert not {e.event_id for e in events} & {e.event_id for e in more}
    assert end == SourcePosition(FIRST, boundaries[3], BOUNDARY)
    cdc_raw.set_idx(FIRST, boundaries[3], completed=True)
    last, _, _, _ = await _drain(source, end)
    assert {e.position.segment_id for e in last} == {FIRST + 1}


async def test_corrupt_entries_are_dead_letters_and_later_ones_still_arrive(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    boundaries = cdc_raw.write(FIRST, [mutations[:4], mutations[4:]])
    data = bytearray(cdc_raw.log(FIRST).read_bytes())
    second_entry = boundaries[0] + 8 + 12 + len(mutations[0])
    data[second_entry + 8 + 12] ^= 0x10  # a flipped bit inside the second mutation
    cdc_raw.log(FIRST).write_bytes(bytes(data))
    source = _source(v7_basic, cdc_raw)
    events, failures, _, _ = await _drain(source)
    (failure,) = failures
    assert failure.reason is FailureReason.DECODE_ERROR
    assert failure.position == SourcePosition(FIRST, second_entry, 0)
    assert failure.schema_details == {"segment_id": FIRST, "offset": second_entry}
    assert failure.raw == mutations[1][:12] + bytes([mutations[1][12] ^ 0x10]) + mutations[1][13:]
    assert {e.position.offset for e in events} >= {boundaries[1] + 8}
    assert source.stats.decode_errors == 0  # framing errors are not mutation decode errors
    again, refailed, _, _ = await _drain(source, failure.position)
    assert not refailed
    assert again


async def test_truncated_and_garbage_segments_do_not_stop_the_next_ones(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    boundaries = cdc_raw.write(FIRST, [mutations[:3], mutations[3:]])
    cdc_raw.log(FIRST).write_bytes(cdc_raw.log(FIRST).read_bytes()[: boundaries[1] + 30])
    cdc_raw.log(FIRST + 1).write_bytes(bytes(range(256)) * 64)
    cdc_raw.set_idx(FIRST + 1, 4096, completed=True)
    cdc_raw.write(FIRST + 2, [mutations[:1]])
    source = _source(v7_basic, cdc_raw)
    events, failures, _, _ = await _drain(source)
    assert [(f.position.segment_id, f.reason) for f in failures] == [
        (FIRST, FailureReason.DECODE_ERROR),
        (FIRST + 1, FailureReason.DECODE_ERROR),
    ]
    assert "past the end of the file" in failures[0].error
    assert failures[1].position == SourcePosition(FIRST + 1, 0, 0)
    assert {e.position.segment_id for e in events} == {FIRST, FIRST + 2}


async def test_an_unknown_table_is_a_dead_letter_with_its_bytes(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    cdc_raw.write(FIRST, [mutations])
    all_types = v7_basic.table("all_types")
    known = [s for s in v7_basic.schemas.values() if s.table_id != all_types.table_id]
    source = _source(v7_basic, cdc_raw, known)
    events, failures, _, _ = await _drain(source)
    assert failures
    assert all(f.reason is FailureReason.UNKNOWN_TABLE for f in failures)
    assert {f.schema_details["table_id"] for f in failures} == {str(all_types.table_id)}
    assert all(f.raw in mutations for f in failures)
    assert events
    assert all(e.table != "all_types" for e in events)
    assert source.stats.unknown_tables == len(failures)


async def test_tables_narrow_what_is_captured(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    cdc_raw.write(FIRST, [mutations])
    source = _source(v7_basic, cdc_raw, tables=["fx_v7_basic.rows"])
    events, _, _, batches = await _drain(source)
    assert events
    assert {e.table for e in events} == {"rows"}
    assert all(set(b.schemas) <= {"fx_v7_basic.rows"} for b in batches)


async def test_a_batch_never_mixes_two_versions_of_a_table(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    """Column ``w`` was dropped since: entries holding it were written under the older
    version, which still had it."""
    cdc_raw.write(FIRST, [mutations])
    rows = v7_basic.table("rows")
    w = rows.column("w")
    dropped = attrs.evolve(
        rows,
        columns=tuple(c for c in rows.columns if c.name != "w"),
        dropped_columns=(w,),
    )
    schemas = [dropped if s.table_id == rows.table_id else s for s in v7_basic.schemas.values()]
    source = _source(v7_basic, cdc_raw, schemas)
    events, failures, _, batches = await _drain(source)
    assert not failures
    touching_w = [e for e in events if "w" in e.touched_columns]
    assert touching_w
    for batch in batches:
        for event in batch.events:
            schema = batch.schemas[event.qualified_table]
            assert set(event.touched_columns) <= set(schema.column_names)
    assert any(b.schemas.get("fx_v7_basic.rows") == dropped for b in batches)
    assert any(b.schemas.get("fx_v7_basic.rows", dropped).column("w") is not None for b in batches)


async def test_an_idx_caught_empty_is_waited_for(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    cdc_raw.write(FIRST, [mutations[:2]])
    cdc_raw.write(FIRST + 1, [mutations[2:]])
    cdc_raw.idx(FIRST).write_text("")
    (cdc_raw.path / f"CommitLog-7-{FIRST + 5}.log").write_bytes(b"")  # no idx: ignored
    source = _source(v7_basic, cdc_raw)
    assert (await source.read(None, 100)).end is None
    cdc_raw.write(FIRST, [mutations[:2]])
    events, failures, _, _ = await _drain(source)
    assert not failures
    assert {e.position.segment_id for e in events} == {FIRST, FIRST + 1}


async def test_acknowledge_frees_completed_segments_every_destination_passed(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes], tmp_path: Path
) -> None:
    cdc_raw.write(FIRST, [mutations[:2]])
    cdc_raw.write(FIRST + 1, [mutations[2:4]])
    cdc_raw.write(FIRST + 2, [mutations[4:]], completed=False)
    archive = tmp_path / "archive"
    source = _source(v7_basic, cdc_raw, archive_dir=archive)
    events, _, end, _ = await _drain(source)
    inside_second = next(e.position for e in events if e.position.segment_id == FIRST + 1)
    await source.acknowledge(inside_second)
    assert not cdc_raw.log(FIRST).exists()
    assert not cdc_raw.idx(FIRST).exists()
    assert (archive / cdc_raw.log(FIRST).name).exists()
    assert cdc_raw.log(FIRST + 1).exists()
    assert end is not None
    await source.acknowledge(end)
    assert not cdc_raw.log(FIRST + 1).exists()
    assert cdc_raw.log(FIRST + 2).exists()  # not COMPLETED: Cassandra still writes it
    assert source.stats.segments_deleted == 2
    rest, _, _, _ = await _drain(source, end)
    assert rest == []


async def test_deleting_instead_of_archiving(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    cdc_raw.write(FIRST, [mutations])
    source = _source(v7_basic, cdc_raw)
    _, _, end, _ = await _drain(source)
    assert end is not None
    await source.acknowledge(end)
    assert list(cdc_raw.path.iterdir()) == []


async def test_a_segment_deleted_under_the_reader_is_skipped(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    cdc_raw.write(FIRST, [mutations[:2]])
    cdc_raw.write(FIRST + 1, [mutations[2:]])
    source = _source(v7_basic, cdc_raw)
    first = await source.read(None, 1)
    cdc_raw.log(FIRST).unlink()  # Cassandra over its cap in non-blocking mode
    events, failures, _, _ = await _drain(source, first.end)
    assert not failures
    assert {e.position.segment_id for e in events} == {FIRST + 1}


async def test_storage_is_what_cdc_raw_holds_until_acknowledged(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw, mutations: list[bytes]
) -> None:
    cdc_raw.write(FIRST, [mutations[:2]])
    cdc_raw.write(FIRST + 1, [mutations[2:]], completed=False)
    source = _source(v7_basic, cdc_raw, cdc_total_space_mb=2)
    assert isinstance(source, StorageReporting)
    held = sum(p.stat().st_size for p in cdc_raw.path.iterdir())

    before = await source.storage()
    _, _, end, _ = await _drain(source)
    assert end is not None
    await source.acknowledge(end)
    after = await source.storage()

    assert before == SourceStorage(str(cdc_raw.path), 2, held, 2 * 1024 * 1024)
    assert after.files == 1  # the segment Cassandra still writes stays
    assert after.used_bytes == cdc_raw.log(FIRST + 1).stat().st_size + len(
        cdc_raw.idx(FIRST + 1).read_bytes()
    )


async def test_storage_without_a_configured_cap_is_cassandras_default(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw
) -> None:
    volume = shutil.disk_usage(cdc_raw.path).total
    storage = await _source(v7_basic, cdc_raw).storage()
    assert storage.total_bytes == min(4096 * 1024 * 1024, volume // 8)
    assert (storage.files, storage.used_bytes, storage.ratio) == (0, 0, 0.0)


async def test_storage_of_an_unreadable_directory_raises_oserror(
    v7_basic: RecordedSegment, cdc_raw: CdcRaw
) -> None:
    source = _source(v7_basic, cdc_raw)
    cdc_raw.path.rmdir()
    with pytest.raises(FileNotFoundError):
        await source.storage()


def test_catalog_restores_a_dropped_column_for_older_mutations(
    v7_basic: RecordedSegment,
) -> None:
    rows = v7_basic.table("rows")
    w = rows.column("w")
    assert w is not None
    after_drop = attrs.evolve(
        rows, columns=tuple(c for c in rows.columns if c.name != "w"), dropped_columns=(w,)
    )
    seen_both = SchemaCatalog(schemas=[rows])
    seen_both.replace([after_drop])
    assert seen_both.written_under(after_drop, {"w", "v"}) == rows
    fresh = SchemaCatalog(schemas=[after_drop])
    restored = fresh.written_under(after_drop, {"w"})
    assert restored.column("w") is not None
    assert restored.dropped_columns == ()
    assert fresh.lookup(rows.table_id) == after_drop
    fresh.replace([])
    assert fresh.lookup(rows.table_id) == after_drop  # a dropped table still decodes
    assert fresh.current() == {}
