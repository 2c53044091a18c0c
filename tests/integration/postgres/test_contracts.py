"""The PostgreSQL adapters against the shared contract suites, unchanged."""

from __future__ import annotations

import pytest

from cdc_adapters.postgres import PostgresDeadLetterQueue, PostgresOffsetStore
from tests.contract.dead_letter_contract import DeadLetterQueueContract
from tests.contract.offset_store_contract import OffsetStoreContract
from tests.contract.sink_contract import MirrorSinkContract
from tests.integration.postgres.conftest import fresh_names


class TestPostgresSink(MirrorSinkContract):
    @pytest.fixture
    async def pair(self, make_pg_sink):
        return await make_pg_sink()

    @pytest.fixture
    def sink(self, pair):
        return pair[0]

    @pytest.fixture
    def read_back(self, pair):
        return pair[1]

    @pytest.fixture
    def make_sink(self, make_pg_sink):
        return make_pg_sink


class TestPostgresOffsetStore(OffsetStoreContract):
    @pytest.fixture
    def schema(self):
        return fresh_names()[1]

    @pytest.fixture
    async def offset_store(self, postgres_database_dsn, schema):
        store = PostgresOffsetStore(dsn=postgres_database_dsn, schema=schema)
        yield store
        await store.aclose()

    @pytest.fixture
    async def reopen(self, postgres_database_dsn, schema):
        opened = []

        async def again():
            store = PostgresOffsetStore(dsn=postgres_database_dsn, schema=schema)
            opened.append(store)
            return store

        yield again
        for store in opened:
            await store.aclose()


class TestPostgresDeadLetterQueue(DeadLetterQueueContract):
    @pytest.fixture
    def schema(self):
        return fresh_names()[1]

    @pytest.fixture
    async def dead_letter_queue(self, postgres_database_dsn, schema):
        queue = PostgresDeadLetterQueue(dsn=postgres_database_dsn, schema=schema)
        yield queue
        await queue.aclose()

    @pytest.fixture
    async def reopen(self, postgres_database_dsn, schema):
        opened = []

        async def again():
            queue = PostgresDeadLetterQueue(dsn=postgres_database_dsn, schema=schema)
            opened.append(queue)
            return queue

        yield again
        for queue in opened:
            await queue.aclose()
