import pytest

from cdc_adapters.memory import MemorySink
from tests.contract.sink_contract import QUALIFIED, MirrorSinkContract


async def _make():
    sink = MemorySink("memory")

    async def read_back():
        return sink.state.rows(QUALIFIED)

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
