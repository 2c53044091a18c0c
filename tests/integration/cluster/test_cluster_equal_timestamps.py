"""Writes of one cell with the same client-supplied timestamp (``USING TIMESTAMP``) and
different values, sent at once through different coordinators: each replica resolves
the tie as Cassandra does (a tombstone beats a value, the greater value beats the
smaller), whatever order the writes reached it in, and so must every destination,
whatever order the three agents deliver their copies in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.cluster.conftest import ClusterNode
from tests.integration.cluster.stack import ClusterStack

STAMP = 1_000_000
KEYS = 40


@pytest.fixture
def coordinators(cluster_nodes: list[ClusterNode]) -> Iterator[list[Any]]:
    """One session per node, each sending every request to that node only."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    clusters = []
    for node in cluster_nodes:
        profile = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy([node.address]),
            consistency_level=ConsistencyLevel.QUORUM,
            request_timeout=60,
        )
        clusters.append(
            Cluster(
                [node.address],
                port=int(node.host.rpartition(":")[2]),
                execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                protocol_version=5,
            )
        )
    sessions = [cluster.connect() for cluster in clusters]
    yield sessions
    for cluster in clusters:
        cluster.shutdown()


def rivals(ks: str, key: int) -> list[tuple[str, tuple[Any, ...]]]:
    """What each coordinator writes to ``key``, all at the same timestamp: three values
    per cell (and map element), a static, and on some keys a deletion of a cell or the
    row among them."""
    at = f"USING TIMESTAMP {STAMP}"
    writes = [
        (
            f"UPDATE {ks}.ties {at} SET t = ?, n = ?, b = ?, m[?] = ?, s = ? "
            "WHERE id = ? AND c = 0",
            (f"v{(key + n) % 3}", (key * 7 + n) % 5 - 2, bytes([n * 40 + key % 7]), "k",
             n - 1, f"s{(key + 2 * n) % 3}", key),
        )
        for n in range(3)
    ]  # fmt: skip
    if key % 4 == 1:
        writes[0] = (f"DELETE t FROM {ks}.ties {at} WHERE id = ? AND c = 0", (key,))
    if key % 4 == 2:
        writes[1] = (f"DELETE FROM {ks}.ties {at} WHERE id = ? AND c = 0", (key,))
    if key % 4 == 3:
        writes[2] = (f"DELETE m[?] FROM {ks}.ties {at} WHERE id = ? AND c = 0", ("k", key))
    return writes


@pytest.mark.timeout(600)
async def test_equal_timestamps_from_different_coordinators_end_as_cassandra_resolves_them(
    cluster_stack: ClusterStack, coordinators: list[Any]
) -> None:
    stack = cluster_stack
    ks = stack.keyspace
    stack.session.execute(
        f"CREATE TABLE {ks}.ties (id int, c int, t text, n int, b blob, m map<text, int>, "
        "s text STATIC, PRIMARY KEY (id, c)) WITH cdc = true"
    )
    stack.configure()
    with stack.links():
        for agent in stack.agents:
            agent.pipeline.start()
        for key in range(KEYS):
            futures = [
                session.execute_async(session.prepare(cql), values)
                for session, (cql, values) in zip(coordinators, rivals(ks, key), strict=True)
            ]
            for future in futures:
                future.result()
        stack.wait_all_caught_up(300)
    rows = {
        r.id: r for r in stack.session.execute(f"SELECT * FROM {ks}.ties", execution_profile="all")
    }
    # Cassandra's own rules, which the ties exercise: the row deletion won its ties
    # (only the static is left), so did the cell deletion, and the greatest value won.
    assert {k for k, r in rows.items() if r.c is None} == set(range(2, KEYS, 4))
    assert {rows[k].t for k in range(1, KEYS, 4)} == {None}
    assert {rows[k].t for k in range(0, KEYS, 4)} == {"v2"}
    await stack.assert_converged()
