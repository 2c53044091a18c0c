"""The segments this suite reads are in the format the node was started for.

CI runs the Cassandra suites against nodes in different configurations (descriptor version
7 and 8, compressed commit logs); these tests prove each pass really read that format,
rather than, say, segments left over from an earlier configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cassandra_live import CdcCapture

from cdc_adapters.cassandra.segment import read_descriptor

pytestmark = pytest.mark.integration

# storage_compatibility_mode -> the commit log descriptor version Cassandra 5.0 writes in it.
DESCRIPTOR_VERSIONS = {"CASSANDRA_4": 7, "UPGRADING": 8, "NONE": 8}


@pytest.fixture(scope="module", autouse=True)
def tables(ddl: Callable[[str], None]) -> None:
    ddl("CREATE TABLE {ks}.t (pk int PRIMARY KEY, v text) WITH cdc = true")


def _segment_of(capture: CdcCapture, keyspace: str) -> Path:
    """The segment holding the next write to ``keyspace.t``."""
    (event,) = capture.run(f"INSERT INTO {keyspace}.t (pk, v) VALUES (1, 'x')")
    (path,) = capture.cdc_raw.glob(f"CommitLog-*-{event.position.segment_id}.log")
    return path


def test_segments_have_the_descriptor_version_of_the_node_mode(
    capture: CdcCapture, keyspace: str
) -> None:
    mode = os.environ.get("CDC_TEST_CASSANDRA_COMPAT_MODE", "CASSANDRA_4")
    descriptor = read_descriptor(_segment_of(capture, keyspace).read_bytes()[:4096])
    assert descriptor.version == DESCRIPTOR_VERSIONS[mode]


def test_segments_are_compressed_as_the_node_is_configured(
    capture: CdcCapture, keyspace: str
) -> None:
    expected = os.environ.get("CDC_TEST_CASSANDRA_COMMITLOG_COMPRESSION") or None
    descriptor = read_descriptor(_segment_of(capture, keyspace).read_bytes()[:4096])
    assert descriptor.compression == expected
