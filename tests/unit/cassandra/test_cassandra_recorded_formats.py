"""The same writes, recorded from nodes writing each commit log format, decode alike.

``v7_basic`` comes from a node in the default mode (descriptor version 7, as 4.0 and 4.1
write it), ``v8_basic`` from one in ``storage_compatibility_mode: NONE`` (version 8,
unsigned local deletion times), and the ``_<codec>`` ones from nodes with that
``commitlog_compression`` (tests/fixtures/commitlog/record_fixtures.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest
from cassandra_recordings import FIXTURES, RecordedSegment, load_recorded

from cdc_adapters.cassandra.event_mapper import EventMapper
from cdc_adapters.cassandra.mutation import MutationDecoder
from cdc_adapters.cassandra.segment import CommitLogEntry, read_descriptor, read_segment_file
from cdc_domain.events import ChangeEvent, CollectionDelta, SourcePosition

CAPTURED = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
RECORDINGS = sorted(p.name for p in FIXTURES.iterdir() if (p / "schema.json").exists())
CODECS = {
    "lz4": "LZ4Compressor",
    "snappy": "SnappyCompressor",
    "deflate": "DeflateCompressor",
    "zstd": "ZstdCompressor",
}


def _events(recorded: RecordedSegment) -> list[ChangeEvent]:
    decoder = MutationDecoder(recorded.schemas.get)
    mapper = EventMapper()
    events = []
    for entry in read_segment_file(recorded.path, limit=recorded.idx_offset):
        assert isinstance(entry, CommitLogEntry), entry
        updates = decoder.decode(entry.mutation, entry.messaging_version)
        events += mapper.map_entry(updates, entry.segment_id, entry.offset, CAPTURED)
    return [e for e in events if e.table != "probe"]


def _comparable(event: ChangeEvent, index: int) -> ChangeEvent:
    """The event without what differs between two recordings of the same writes: where it
    sits, the writes' server-side clocks (counters carry no USING TIMESTAMP, a TTL's expiry
    follows the write's time) and the timeuuids a node gives list elements."""
    return attrs.evolve(
        event,
        event_id="",
        keyspace="",
        position=SourcePosition(0, 0, index),
        timestamp_micros=0 if event.table == "counts" else event.timestamp_micros,
        expires_at=None,
        collections={name: _without_cell_ids(d) for name, d in event.collections.items()},
    )


def _without_cell_ids(delta: CollectionDelta) -> CollectionDelta:
    if delta.kind != "list":
        return delta
    elements = tuple(attrs.evolve(e, key=n) for n, e in enumerate(delta.elements))
    return attrs.evolve(delta, elements=elements, removed=tuple(range(len(delta.removed))))


def _normalised(events: list[ChangeEvent]) -> list[Any]:
    return [_comparable(e, n) for n, e in enumerate(events)]


@pytest.mark.parametrize("name", [n for n in RECORDINGS if n != "v7_basic"])
def test_every_recording_decodes_to_the_events_of_the_first(name: str) -> None:
    reference = _events(load_recorded("v7_basic"))
    assert len(reference) > 10
    assert _normalised(_events(load_recorded(name))) == _normalised(reference)


@pytest.mark.parametrize("name", RECORDINGS)
def test_each_recording_is_in_the_format_its_name_says(name: str) -> None:
    version, _, rest = name.partition("_")
    codec = rest.rpartition("_")[2]
    descriptor = read_descriptor(load_recorded(name).data[:4096])
    assert descriptor.version == int(version.removeprefix("v"))
    assert descriptor.messaging_version == {7: 12, 8: 13}[descriptor.version]
    assert descriptor.compression == CODECS.get(codec)


def test_there_are_recordings_of_both_versions_and_of_compressed_segments() -> None:
    assert {"v7_basic", "v8_basic"} <= set(RECORDINGS)
    assert any(name.rpartition("_")[2] in CODECS for name in RECORDINGS)


@pytest.mark.parametrize("name", RECORDINGS)
def test_expiry_times_are_read_as_the_recording_day_plus_the_ttl(name: str) -> None:
    """Local deletion times are signed in version 7 and unsigned in 8: read the other way,
    an expiry would land in 1901 or 2106, not on the day the fixture was recorded."""
    expiring = [e for e in _events(load_recorded(name)) if e.ttl_seconds]
    assert expiring
    for event in expiring:
        assert event.expires_at is not None
        written = event.expires_at - dt.timedelta(seconds=event.ttl_seconds)
        assert (
            dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
            < written
            < dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        )
