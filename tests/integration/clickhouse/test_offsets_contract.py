"""The shared OffsetStore contract, unchanged, on both ClickHouse servers."""

import itertools

import pytest

from cdc_adapters.clickhouse import ClickHouseOffsetStore
from cdc_adapters.local import SystemClock
from cdc_domain.events import SourcePosition
from cdc_domain.offsets import Checkpoint
from tests.contract.offset_store_contract import OffsetStoreContract

_tables = itertools.count()


class TestClickHouseOffsetStore(OffsetStoreContract):
    @pytest.fixture
    def location(self, namespace):
        return {"database": f"{namespace}offsets", "table": f"cdc_offsets_{next(_tables)}"}

    @pytest.fixture
    async def offset_store(self, server_url, location):
        store = ClickHouseOffsetStore(url=server_url, clock=SystemClock(), **location)
        yield store
        await store.aclose()

    @pytest.fixture
    async def reopen(self, server_url, location):
        opened = []

        async def again():
            opened.append(ClickHouseOffsetStore(url=server_url, clock=SystemClock(), **location))
            return opened[-1]

        yield again
        for store in opened:
            await store.aclose()

    async def test_a_retried_commit_counts_once(self, offset_store):
        """A commit whose response was lost is sent again: the total must not double."""
        checkpoint = Checkpoint("node1", SourcePosition(7, 70), 5)
        await offset_store.commit("ch", checkpoint)
        await offset_store.commit("ch", checkpoint)
        await offset_store.commit("ch", Checkpoint("node1", SourcePosition(7, 80), 3))
        record = await offset_store.load("ch", "node1")
        assert (record.position, record.events_processed) == (SourcePosition(7, 80), 8)
