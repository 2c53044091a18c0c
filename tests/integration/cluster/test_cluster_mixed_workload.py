"""The product as a cluster runs it: a 3-node Cassandra with replication factor 3, one
agent per node, more than 10,000 statements of every kind at ``QUORUM`` (TTLs,
collections, statics, range and partition deletions, batches, LWTs) with ``ALTER TABLE
ADD`` / ``DROP`` and a new table mid-run. Every write reaches all three commit logs, so
every agent delivers it: afterwards PostgreSQL and ClickHouse equal Cassandra read at
``ALL``, the TimescaleDB history holds each write once and implies the same state."""

from __future__ import annotations

import pytest

from tests.integration.cluster.stack import ClusterStack
from tests.integration.e2e.workload import Workload, Writer, create_tables, evolving


@pytest.mark.timeout(900)
async def test_three_agents_converge_on_cassandra_after_a_mixed_workload(
    cluster_stack: ClusterStack,
) -> None:
    stack = cluster_stack
    create_tables(stack.session, stack.keyspace)
    workload = Workload(stack.keyspace, seed=21)
    stack.configure()
    with stack.links():
        for agent in stack.agents:
            agent.pipeline.start()
        writer = Writer(stack.session)
        writer.until(
            workload, 10_000, between=evolving(stack.session, workload, (3000, 5000, 7000))
        )
        stack.wait_all_caught_up(600)
    await stack.assert_converged()
