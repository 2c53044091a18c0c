"""A real Cassandra cluster: its nodes, their cdc_raw directories, and node control.

Every test here is marked ``cluster`` and deselected by default; run them with a cluster
up: ``CDC_CASSANDRA_NODES=3 scripts/services up`` then ``scripts/test -m cluster
tests/integration/cluster``. Without one they fail, naming what to start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.integration import services
from tests.integration.services import REPO_ROOT, SERVICES_SCRIPT

CLUSTER_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.cluster)


@attrs.frozen
class ClusterNode:
    number: int
    host: str
    cdc_raw_dir: Path

    @property
    def address(self) -> str:
        return self.host.rpartition(":")[0]


@pytest.fixture(scope="session")
def cluster_nodes() -> list[ClusterNode]:
    hosts = os.environ.get("CDC_TEST_CASSANDRA_NODES", "")
    raw_dirs = os.environ.get("CDC_TEST_CASSANDRA_CDC_RAW_DIRS", "")
    if "," not in hosts:
        pytest.fail(
            "no Cassandra cluster: start one with `CDC_CASSANDRA_NODES=3 scripts/services up` "
            'and `eval "$(scripts/services env)"`',
            pytrace=False,
        )
    return [
        ClusterNode(number, host, Path(raw))
        for number, (host, raw) in enumerate(
            zip(hosts.split(","), raw_dirs.split(","), strict=True), start=1
        )
    ]


def _services(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SERVICES_SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def node_control(cluster_nodes: list[ClusterNode]) -> Iterator[Callable[[int, bool], None]]:
    """``control(node, up)`` stops or starts a node (keeping its data); every node a test
    stopped is started again afterwards."""
    stopped: set[int] = set()

    def control(number: int, up: bool) -> None:
        _services("start-node" if up else "stop-node", str(number))
        (stopped.discard if up else stopped.add)(number)

    yield control
    for number in sorted(stopped):
        _services("start-node", str(number))


@pytest.fixture(scope="session")
def cluster_session(cluster_nodes: list[ClusterNode]) -> Iterator[Any]:
    """A driver session on every node: writes at ``QUORUM`` by default, reads for
    comparisons at ``ALL`` (execution profile ``all``). Generous timeouts: three nodes
    share two cores with the agents and the destinations. DDL returns once every node
    the driver sees up has the new schema: a node just restarted may take longer than
    the driver's default ten seconds, and a statement it coordinates meanwhile fails."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import ExponentialReconnectionPolicy

    def profile(consistency: int) -> ExecutionProfile:
        return ExecutionProfile(consistency_level=consistency, request_timeout=60)

    port = int(cluster_nodes[0].host.rpartition(":")[2])
    cluster = Cluster(
        [node.address for node in cluster_nodes],
        port=port,
        execution_profiles={
            EXEC_PROFILE_DEFAULT: profile(ConsistencyLevel.QUORUM),
            "all": profile(ConsistencyLevel.ALL),
        },
        protocol_version=5,
        max_schema_agreement_wait=120,
        reconnection_policy=ExponentialReconnectionPolicy(1.0, 10.0),
    )
    session = cluster.connect()
    yield session
    cluster.shutdown()


@pytest.fixture(scope="module")
def cluster_keyspace(cluster_session: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A keyspace of this module's own, replicated to all three nodes."""
    name = services.isolated_name("cl", request.module.__name__)
    schema_change(
        cluster_session,
        f"CREATE KEYSPACE IF NOT EXISTS {name} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 3}",
    )
    yield name
    schema_change(cluster_session, f"DROP KEYSPACE IF EXISTS {name}")


def schema_change(session: Any, cql: str, within: float = 300) -> None:
    """An idempotent DDL statement, sent again when its answer times out: on a loaded
    machine a node may take longer than any client timeout to apply a schema change
    (a keyspace drop flushes and deletes every table), and a connection the driver
    declared dead fails what it carried."""
    from cassandra import OperationTimedOut
    from cassandra.cluster import NoHostAvailable

    deadline = time.monotonic() + within
    while True:
        try:
            session.execute(cql, timeout=120)
            return
        except (OperationTimedOut, NoHostAvailable):
            if time.monotonic() > deadline:
                raise


@pytest.fixture(scope="module")
async def cluster_stack(
    cluster_nodes: list[ClusterNode],
    cluster_session: Any,
    cluster_keyspace: str,
    postgres_database_dsn: str,
    clickhouse_url: str,
    timescaledb_dsn: str,
    timescaledb_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Any]:
    from tests.integration.cluster.stack import ClusterStack
    from tests.integration.e2e.conftest import clickhouse_query

    stack = ClusterStack(
        keyspace=cluster_keyspace,
        session=cluster_session,
        nodes=cluster_nodes,
        workdir=tmp_path_factory.mktemp("cluster"),
        postgres_dsn=postgres_database_dsn,
        clickhouse_url=clickhouse_url,
        timescaledb_dsn=timescaledb_dsn,
        timescaledb_schema=timescaledb_schema,
        dead_letter_schema="public",
    )
    yield stack
    # A failed test leaves agents running; none may outlive the module (they would hold
    # TimescaleDB's one connection, and read a keyspace about to be dropped).
    for agent in stack.agents:
        if agent.pipeline.alive():
            agent.pipeline.kill()
    clickhouse_query(clickhouse_url, f"DROP DATABASE IF EXISTS {cluster_keyspace}")
