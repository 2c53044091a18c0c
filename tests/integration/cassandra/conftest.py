"""A live Cassandra with CDC (scripts/services up cassandra) and a reader of its cdc_raw.

The tests write through CQL and read back what the commit log says, from the idx offsets
recorded before the writes up to the current ones. A missing service fails the tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cassandra_live import CdcCapture
from cdc_view import CdcRawView

from cdc_adapters.cassandra import CassandraSchemaSource

pytestmark = pytest.mark.integration


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: start Cassandra with `scripts/services up cassandra` and run"
            ' `eval "$(scripts/services env)"` first',
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def cassandra_session() -> Iterator[Any]:
    from cassandra.cluster import Cluster, NoHostAvailable

    host, _, port = _env("CDC_TEST_CASSANDRA_HOSTS").split(",")[0].partition(":")
    cluster = Cluster([host], port=int(port or 9042))
    try:
        session = cluster.connect()
    except NoHostAvailable as exc:
        pytest.fail(f"Cassandra at {host}:{port} does not answer: {exc}", pytrace=False)
    yield session
    cluster.shutdown()


@pytest.fixture(scope="session")
def cdc_raw_dir() -> Path:
    path = Path(_env("CDC_TEST_CASSANDRA_CDC_RAW_DIR"))
    if not path.is_dir():
        pytest.fail(f"cdc_raw directory {path} does not exist", pytrace=False)
    return path


@pytest.fixture(scope="module")
def keyspace(cassandra_session: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"it_{request.module.__name__.rsplit('.', 1)[-1][:30]}_{uuid.uuid4().hex[:6]}"
    cassandra_session.execute(
        f"CREATE KEYSPACE {name} WITH replication ="
        " {'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    yield name
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest.fixture(scope="module")
def capture(cassandra_session: Any, cdc_raw_dir: Path, keyspace: str) -> CdcCapture:
    return CdcCapture(cassandra_session, cdc_raw_dir, keyspace)


@pytest.fixture(scope="module")
def ddl(cassandra_session: Any, keyspace: str) -> Callable[[str], None]:
    def execute(statement: str) -> None:
        cassandra_session.execute(statement.format(ks=keyspace))

    return execute


@pytest.fixture(scope="session")
def hosts() -> list[str]:
    return _env("CDC_TEST_CASSANDRA_HOSTS").split(",")


@pytest.fixture
async def schemas(hosts: list[str]) -> AsyncIterator[CassandraSchemaSource]:
    """The node's schema source, whose catalog the sources under test decode with."""
    source = CassandraSchemaSource(hosts=hosts)
    yield source
    await source.aclose()


@pytest.fixture
def cdc_view(cdc_raw_dir: Path, tmp_path: Path) -> CdcRawView:
    """Hard links to the live segments from now on, for a source that may delete them."""
    return CdcRawView(cdc_raw_dir, tmp_path / "cdc_raw_view")
