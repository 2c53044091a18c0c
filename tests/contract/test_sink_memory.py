import pytest

from cdc_adapters.memory import MemorySink
from tests.contract.sink_contract import SCHEMA, MirrorSinkContract


async def _make(**_options):
    """The reference sink: every drop policy hides dropped columns the same way."""
    sink = MemorySink("memory")

    async def read_back(schema=SCHEMA):
        return sink.state.rows(schema.qualified_name)

    return sink, read_back


class TestMemorySink(MirrorSinkContract):
    @pytest.fixture
    async def pair(self):
        return await _make()

    @pytest.fixture
    def sink(self, pair):
        return pair[0]

    @pytest.fixture
    def read_back(self, pair):
        return pair[1]

    @pytest.fixture
    def make_sink(self):
        return _make
