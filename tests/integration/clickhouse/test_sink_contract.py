"""The shared Sink contract, unchanged, on both ClickHouse servers."""

import pytest

from tests.contract.sink_contract import MirrorSinkContract


class TestClickHouseSink(MirrorSinkContract):
    @pytest.fixture
    async def pair(self, make_sink):
        return await make_sink()

    @pytest.fixture
    def sink(self, pair):
        return pair[0]

    @pytest.fixture
    def read_back(self, pair):
        return pair[1]
