"""Recorded commit log fixtures (see tests/fixtures/commitlog/record_fixtures.py)."""

from __future__ import annotations

import pytest
from cassandra_recordings import RecordedSegment, load_recorded


@pytest.fixture(scope="session")
def v7_basic() -> RecordedSegment:
    return load_recorded("v7_basic")
