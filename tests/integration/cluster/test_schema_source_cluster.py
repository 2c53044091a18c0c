"""An agent's schema source on a cluster: its own node first; when that node is down the
others answer for the schema while health says the node is down; it comes back with it."""

from __future__ import annotations

import pytest

from cdc_adapters.cassandra import CassandraSchemaSource
from cdc_domain.health import HealthStatus
from tests.support.waiting import eventually


@pytest.mark.timeout(300)
async def test_the_own_node_down_is_reported_while_the_others_serve_the_schema(
    cluster_nodes, node_control
):
    own, *others = cluster_nodes[1], cluster_nodes[0], cluster_nodes[2]
    source = CassandraSchemaSource(hosts=[own.host, *(n.host for n in others)])
    try:

        async def up() -> bool:
            return (await source.health()).status is HealthStatus.UP

        # A test before this one may have restarted a node the driver has yet to see.
        await eventually(up, within=120, what="the own node answering")
        assert (await source.health()).message.startswith(own.host)

        node_control(own.number, False)
        down = await source.health()
        assert down.status is HealthStatus.DOWN
        assert "down" in down.message
        await source.refresh()  # the others answer for the schema
        assert await source.table("test_keyspace", "cluster_probe") is not None

        node_control(own.number, True)
        await eventually(up, within=120, what="the own node answering again")
    finally:
        await source.aclose()
