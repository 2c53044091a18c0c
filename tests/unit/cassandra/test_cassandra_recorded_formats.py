"""The same writes, recorded from nodes writing each commit log format, decode alike.

``v7_basic`` comes from a 5.0 node in the default mode (descriptor version 7, as 4.0
and 4.1 write it), ``v8_basic`` from one in ``storage_compatibility_mode: NONE`` (version
8, unsigned local deletion times), the ``_<codec>`` ones from nodes with that
``commitlog_compression``, and the ``_cassandra40`` / ``_cassandra41`` ones from 4.0 and
4.1 servers, which have no ``vector`` type (tests/fixtures/commitlog/record_fixtures.py).
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
OLDER_SERVERS = {"cassandra40": (4, 0), "cassandra41": (4, 1)}
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


def _normalised(events: list[ChangeEvent], *, vectors: bool = True) -> list[Any]:
    comparable = [_comparable(e, n) for n, e in enumerate(events)]
    if vectors:
        return comparable
    return [
        attrs.evolve(e, columns={k: v for k, v in e.columns.items() if k != "a_vector"})
        for e in comparable
    ]


def _server(name: str) -> str:
    return name.rpartition("_")[2]


@pytest.mark.parametrize("name", [n for n in RECORDINGS if n != "v7_basic"])
def test_every_recording_decodes_to_the_events_of_the_first(name: str) -> None:
    reference = _events(load_recorded("v7_basic"))
    assert len(reference) > 10
    vectors = _server(name) not in OLDER_SERVERS  # the 4.x tables have no vector column
    assert _normalised(_events(load_recorded(name)), vectors=vectors) == _normalised(
        reference, vectors=vectors
    )


@pytest.mark.parametrize("name", RECORDINGS)
def test_each_recording_is_in_the_format_its_name_says(name: str) -> None:
    version, _, rest = name.partition("_")
    codec = rest.rpartition("_")[2]
    descriptor = read_descriptor(load_recorded(name).data[:4096])
    assert descriptor.version == int(version.removeprefix("v"))
    assert descriptor.messaging_version == {7: 12, 8: 13}[descriptor.version]
    assert descriptor.compression == CODECS.get(codec)


def test_there_are_recordings_of_both_versions_compressed_segments_and_older_servers() -> None:
    assert {"v7_basic", "v8_basic"} <= set(RECORDINGS)
    assert any(_server(name) in CODECS for name in RECORDINGS)
    assert {_server(name) for name in RECORDINGS} >= set(OLDER_SERVERS)


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
