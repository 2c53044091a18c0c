"""The driver's cluster as the agent builds it (no connection is made)."""

from __future__ import annotations

import itertools

from cdc_adapters.cassandra.driver import RECONNECT_MAX_S, CassandraConnection


def test_a_node_that_comes_back_is_tried_again_within_seconds():
    cluster = CassandraConnection(["127.0.0.2:9242", "127.0.0.1:9242"])._new_cluster()
    delays = list(itertools.islice(cluster.reconnection_policy.new_schedule(), 20))
    assert delays[0] <= 2
    assert max(delays) <= RECONNECT_MAX_S
    assert cluster.port == 9242
    assert cluster.contact_points == ["127.0.0.2", "127.0.0.1"]
