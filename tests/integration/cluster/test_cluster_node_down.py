"""One Cassandra node stopped for a minute mid-workload, then started again: writes go
on at ``QUORUM`` on the other two, whose agents keep the destinations current; the
stopped node's agent keeps running (its node down in health), and when the node is back
the hints the others kept for it are replayed into its commit log (and a table created
then reaches it), where its agent reads
them as copies of writes the destinations already hold. Afterwards every destination
equals Cassandra read at ``ALL`` and the history holds each write once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.integration.cluster.conftest import schema_change
from tests.integration.cluster.stack import ClusterStack
from tests.integration.e2e.workload import REVIEWS, Workload, Writer, create_tables, evolving
from tests.support.waiting import eventually

DOWN_S = 60
STOPPED = 2


def pending_hints(session: Any) -> int:
    """Hint files every node still holds for another, from its own virtual table."""
    hosts = session.cluster.metadata.all_hosts()
    return sum(
        len(list(session.execute("SELECT * FROM system_views.pending_hints", host=host)))
        for host in hosts
        if host.is_up
    )


def schema_versions(session: Any) -> int:
    """How many schema versions the nodes hold (0 while the driver sees one down)."""
    hosts = session.cluster.metadata.all_hosts()
    if not all(host.is_up for host in hosts):
        return 0
    query = "SELECT schema_version FROM system.local"
    return len({row.schema_version for h in hosts for row in session.execute(query, host=h)})


def knows(session: Any, keyspace: str, table: str) -> bool:
    """Whether every node has the table (a statement any of them coordinates finds it)."""
    query = (
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s"
    )
    return all(
        session.execute(query, (keyspace, table), host=host).one() is not None
        for host in session.cluster.metadata.all_hosts()
    )


@pytest.mark.timeout(900)
async def test_a_node_down_for_a_minute_and_back_loses_and_duplicates_nothing(
    cluster_stack: ClusterStack, node_control: Any
) -> None:
    stack = cluster_stack
    session = stack.session
    create_tables(session, stack.keyspace)
    workload = Workload(stack.keyspace, seed=31)
    stack.configure()
    writer = Writer(session)
    with stack.links():
        for agent in stack.agents:
            agent.pipeline.start()
        writer.until(workload, 3000, between=evolving(session, workload, (1000, 2000, 10**9)))

        node_control(STOPPED, False)
        stopped = stack.agents[STOPPED - 1].pipeline

        async def reported_down() -> bool:
            health = await asyncio.to_thread(stopped.get, "/health")
            return health is not None and "down" in str(health).lower()

        await eventually(reported_down, within=60, what=f"node {STOPPED}'s agent reporting it down")
        down_since = time.monotonic()
        while time.monotonic() - down_since < DOWN_S:
            writer.run(workload.wave())
            await asyncio.sleep(1.0)  # paces the workload over the minute the node is down

        node_control(STOPPED, True)

        async def agreed() -> bool:
            return await asyncio.to_thread(schema_versions, session) == 1

        await eventually(agreed, within=180, what="every node up, on one schema")
        schema_change(session, REVIEWS.format(ks=stack.keyspace))

        async def created() -> bool:
            return await asyncio.to_thread(knows, session, stack.keyspace, "reviews")

        await eventually(created, within=180, what="every node knowing the new table")
        workload.reviews = True
        writer.until(workload, max(10_000, writer.statements + 2000))

        async def hints_replayed() -> bool:
            return await asyncio.to_thread(pending_hints, session) == 0

        await eventually(hints_replayed, within=300, what="every hint replayed")
        stack.wait_all_caught_up(600)
    nodes = await stack.captured_writes_per_node()
    others = set().union(*(writes for n, writes in nodes.items() if n != STOPPED))
    missed = others - nodes[STOPPED]
    assert not missed, f"node {STOPPED} never received {len(missed)} writes (hints not replayed)"
    await stack.assert_converged()
