"""The Cassandra change and schema sources against the port contracts, on the live node."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from cdc_view import CdcRawView
from live_source import Consumer, live_source

from cdc_adapters.cassandra.schema_source import CassandraSchemaSource
from tests.contract.change_source_contract import ChangeSourceContract
from tests.contract.schema_source_contract import SchemaSourceContract

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def contract_table(cassandra_session: Any, keyspace: str) -> str:
    cassandra_session.execute(
        f"CREATE TABLE {keyspace}.contract (id int PRIMARY KEY, v text) WITH cdc = true"
    )
    return f"{keyspace}.contract"


class TestCassandraChangeSource(ChangeSourceContract):
    @pytest.fixture
    async def change_source(
        self, cdc_view: CdcRawView, schemas: CassandraSchemaSource, contract_table: str
    ):
        source = live_source(cdc_view, schemas, contract_table)
        yield source
        await source.aclose()

    @pytest.fixture
    def produce(
        self,
        cassandra_session: Any,
        contract_table: str,
        cdc_view: CdcRawView,
        schemas: CassandraSchemaSource,
    ):
        async def produce(count: int) -> None:
            ids = [next(_ids) for _ in range(count)]
            for row_id in ids:
                cassandra_session.execute(
                    f"INSERT INTO {contract_table} (id, v) VALUES (%s, 'x')", (row_id,)
                )
            # Durable at the source: a reader of its own sees every row.
            probe = Consumer(live_source(cdc_view, schemas, contract_table), cdc_view)
            wanted = set(ids)
            await probe.until(lambda events: wanted <= {e.partition_key["id"] for e in events})
            await probe.source.aclose()

        return produce


class TestCassandraSchemaSource(SchemaSourceContract):
    @pytest.fixture
    async def schema_source(self, hosts: list[str]):
        source = CassandraSchemaSource(hosts=hosts)
        yield source
        await source.aclose()

    @pytest.fixture
    def define(self, cassandra_session: Any):
        async def define(keyspace: str, table: str, columns_cql: str) -> None:
            existing = {
                row.column_name
                for row in cassandra_session.execute(
                    "SELECT column_name FROM system_schema.columns"
                    " WHERE keyspace_name = %s AND table_name = %s",
                    (keyspace, table),
                )
            }
            if not existing:
                await asyncio.to_thread(
                    cassandra_session.execute, f"CREATE TABLE {keyspace}.{table} ({columns_cql})"
                )
                return
            for part in columns_cql.split(","):
                words = part.split()
                if words and words[0] not in existing and words[0] != "PRIMARY":
                    await asyncio.to_thread(
                        cassandra_session.execute,
                        f"ALTER TABLE {keyspace}.{table} ADD {words[0]} {words[1]}",
                    )

        return define
