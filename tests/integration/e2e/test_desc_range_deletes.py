"""Range deletions on a ``CLUSTERING ORDER BY (... DESC)`` table, from the commit log to
the reference state: the source must say which clustering columns are descending, or a
range ``line > 3 AND line <= 6`` (stored as start 6, end 3) deletes nothing and
``line >= 8`` deletes every line up to 8."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cdc_adapters.cassandra import CassandraChangeSource, CassandraSchemaSource
from cdc_domain.events import DeletionScope
from cdc_domain.mirror import MirrorState
from tests.integration.e2e.harness import CdcRawLinks, durable_end


async def test_a_desc_range_deletion_removes_the_rows_cassandra_removed(
    cassandra_session: Any,
    cassandra_keyspace: str,
    cassandra_endpoint: Any,
    cdc_raw_dir: Path,
    tmp_path: Path,
) -> None:
    ks = cassandra_keyspace
    cassandra_session.execute(
        f"CREATE TABLE {ks}.lines (order_id int, line int, sku text, PRIMARY KEY (order_id, "
        "line)) WITH CLUSTERING ORDER BY (line DESC) AND cdc = true"
    )
    copy = tmp_path / "cdc_raw"
    with CdcRawLinks(cdc_raw_dir, [copy]):
        for line in range(10):
            cassandra_session.execute(
                f"INSERT INTO {ks}.lines (order_id, line, sku) VALUES (1, %s, 's')", (line,)
            )
        cassandra_session.execute(
            f"DELETE FROM {ks}.lines WHERE order_id = 1 AND line > 3 AND line <= 6"
        )
        cassandra_session.execute(f"DELETE FROM {ks}.lines WHERE order_id = 1 AND line >= 8")
        await asyncio.to_thread(durable_end, copy)
    schemas = CassandraSchemaSource(hosts=[cassandra_endpoint.contact_point])
    source = CassandraChangeSource(
        partition_id="node1", cdc_raw_dir=copy, schemas=schemas, tables=[f"{ks}.lines"]
    )
    try:
        batch = await source.read(None, 1000)
    finally:
        await source.aclose()
        await schemas.aclose()
    ranges = [e.clustering_range for e in batch.events if e.scope is DeletionScope.RANGE]
    assert [r.descending for r in ranges if r is not None] == [("line",), ("line",)]
    state = MirrorState()
    state.apply_all(batch.events)
    held = sorted(ck[0] for _, ck in state.rows(f"{ks}.lines"))
    rows = cassandra_session.execute(f"SELECT line FROM {ks}.lines WHERE order_id = 1")
    assert held == sorted(r.line for r in rows) == [0, 1, 2, 3, 7]
