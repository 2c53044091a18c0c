"""A real Cassandra cluster: its nodes, their cdc_raw directories, and node control.

Every test here is marked ``cluster`` and deselected by default; run them with a cluster
up: ``CDC_CASSANDRA_NODES=3 scripts/services up`` then ``scripts/test -m cluster
tests/integration/cluster``. Without one they fail, naming what to start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

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
