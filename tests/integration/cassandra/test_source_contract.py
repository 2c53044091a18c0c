"""The Cassandra change and schema sources against the port contracts, on the live node."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from cdc_view import CdcRawView
from live_source import Consumer, live_source

from cdc_adapters.cassandra.reader_process import ProcessChangeSource, ReaderSpec
from cdc_adapters.cassandra.schema_source import CassandraSchemaSource
from tests.contract.change_source_contract import ChangeSourceContract
from tests.contract.schema_source_contract import SchemaSourceContract

_ids = itertools.count(1)
SEGMENT_BYTES = 4 * 1024 * 1024
"""``commitlog_segment_size`` of the test node (scripts/services)."""


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

    @pytest.fixture
    def produce_freeable(
        self,
        cassandra_session: Any,
        contract_table: str,
        cdc_view: CdcRawView,
        schemas: CassandraSchemaSource,
    ):
        """Rows until the node has completed a segment holding some of them: only a
        completed segment can be freed, and the one being written never is."""

        async def produce_freeable() -> None:
            insert = cassandra_session.prepare(
                f"INSERT INTO {contract_table} (id, v) VALUES (?, ?)"
            )
            padding = "p" * 4096
            chunk = 200  # ~0.8 MiB of commit log
            probe = Consumer(live_source(cdc_view, schemas, contract_table), cdc_view)
            written: set[int] = set()
            try:
                for _ in range(4 * SEGMENT_BYTES // (chunk * len(padding))):
                    for _ in range(chunk):
                        row_id = next(_ids)
                        written.add(row_id)
                        cassandra_session.execute(insert, (row_id, padding))
                    ours = await probe.until(
                        lambda events: written <= {e.partition_key["id"] for e in events}
                    )
                    # The reader only moves to a newer segment once the older one is
                    # completed: ours in two segments means the first is.
                    segments = {
                        e.position.segment_id for e in ours if e.partition_key["id"] in written
                    }
                    if len(segments) >= 2:
                        return
            finally:
                await probe.source.aclose()
            raise AssertionError(f"no segment holding our rows completed after {len(written)} rows")

        return produce_freeable


class TestCassandraChangeSourceInAProcess(TestCassandraChangeSource):
    """The same contract through a reader process of its own (``source.reader_process``),
    which decodes with its own schema source."""

    @pytest.fixture
    async def change_source(self, cdc_view: CdcRawView, hosts: list[str], contract_table: str):
        spec = ReaderSpec(
            partition_id="it-node",
            cdc_raw_dir=str(cdc_view.view),
            hosts=tuple(hosts),
            tables=(contract_table,),
        )
        source = ProcessChangeSource(spec)
        yield source
        await source.aclose()


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
