"""The TimescaleDB sink (history and mirror modes) and the offset store on TimescaleDB,
against the shared contract suites, unchanged."""

from __future__ import annotations

import functools

import pytest

from cdc_adapters.postgres import PostgresOffsetStore
from tests.contract.offset_store_contract import OffsetStoreContract
from tests.contract.sink_contract import (
    MirrorSinkContract,
    OffsetCommittingSinkContract,
    SinkContract,
)


class TestTimescaleHistorySink(SinkContract, OffsetCommittingSinkContract):
    semantics = "log"

    @pytest.fixture
    async def pair(self, make_ts_sink):
        return await make_ts_sink("history")

    @pytest.fixture
    def sink(self, pair):
        return pair[0]

    @pytest.fixture
    def read_back(self, pair):
        return pair[1]


class TestTimescaleMirrorSink(MirrorSinkContract, OffsetCommittingSinkContract):
    @pytest.fixture
    async def pair(self, make_ts_sink):
        return await make_ts_sink("mirror")

    @pytest.fixture
    def sink(self, pair):
        return pair[0]

    @pytest.fixture
    def read_back(self, pair):
        return pair[1]

    @pytest.fixture
    def make_sink(self, make_ts_sink):
        return functools.partial(make_ts_sink, "mirror")


class TestTimescaleOffsetStore(OffsetStoreContract):
    @pytest.fixture
    def schema(self, ts_names):
        return ts_names.fresh()[1]

    @pytest.fixture
    def offset_store(self, ts_pool, schema):
        return PostgresOffsetStore(pool=ts_pool, schema=schema)

    @pytest.fixture
    def reopen(self, ts_pool, schema):
        async def again():
            return PostgresOffsetStore(pool=ts_pool, schema=schema)

        return again
