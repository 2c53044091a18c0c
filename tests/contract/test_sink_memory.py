import functools

import pytest

from cdc_adapters.memory import ManualClock, MemoryOffsetStore, MemorySink
from tests.contract.sink_contract import SCHEMA, MirrorSinkContract, OffsetCommittingSinkContract


async def _make(*, committing=False, **_options):
    """The reference sink: every drop policy hides dropped columns the same way.
    ``committing``: one that commits offsets and keeps one record per write."""
    if committing:
        sink = MemorySink("memory", offsets=MemoryOffsetStore(ManualClock()), absorb_copies=True)
    else:
        sink = MemorySink("memory")

    async def read_back(schema=SCHEMA):
        return sink.state.rows(schema.qualified_name)

    return sink, read_back


class TestMemorySink(MirrorSinkContract):
    committing = False

    @pytest.fixture
    def make_sink(self):
        return functools.partial(_make, committing=self.committing)

    @pytest.fixture
    async def pair(self, make_sink):
        return await make_sink()

    @pytest.fixture
    def sink(self, pair):
        return pair[0]

    @pytest.fixture
    def read_back(self, pair):
        return pair[1]


class TestMemorySinkCommittingOffsets(TestMemorySink, OffsetCommittingSinkContract):
    """Given a store, the memory sink commits offsets as the database sinks do; with
    ``absorb_copies`` it keeps one record per write, which a mirror cannot tell from
    applying a write again."""

    committing = True
