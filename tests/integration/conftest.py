"""Fixtures for tests against the real services (see services.py for where they come from).

Session-scoped endpoints: ``cassandra_endpoint``, ``cassandra_session``, ``cdc_raw_dir``,
``postgres_dsn``, ``clickhouse_url``, ``timescaledb_dsn``.
Per test module, a fresh isolated namespace that is dropped afterwards: ``cassandra_keyspace``,
``postgres_database_dsn``, ``clickhouse_database``, ``timescaledb_schema``.

Every test under tests/integration is marked ``integration``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration import services
from tests.integration.services import CassandraEndpoint, ServiceUnavailable

INTEGRATION_DIR = Path(__file__).parent

# Shared test bodies outside test_*.py files: their asserts should say what differed.
pytest.register_assert_rewrite("tests.integration.postgres.convergence")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


def _values(service: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The service's CDC_TEST_* values; any failure fails the test (never a skip)."""
    try:
        resolved = services.resolve(service)
    except ServiceUnavailable as e:
        problem = str(e)
    else:
        request.addfinalizer(resolved.close)
        return resolved.values
    pytest.fail(problem, pytrace=False)  # outside `except`: no chained traceback


# --------------------------------------------------------------------------- Cassandra


@pytest.fixture(scope="session")
def cassandra_endpoint(request: pytest.FixtureRequest) -> CassandraEndpoint:
    return services.cassandra_endpoint(_values("cassandra", request))


@pytest.fixture(scope="session")
def cdc_raw_dir(cassandra_endpoint: CassandraEndpoint) -> Path:
    if cassandra_endpoint.cdc_raw_dir is None or not cassandra_endpoint.cdc_raw_dir.is_dir():
        pytest.fail(
            f"cassandra's cdc_raw directory is not visible here ({services.CDC_RAW_VAR}="
            f"{cassandra_endpoint.cdc_raw_dir}); run Cassandra with "
            f'`scripts/services up cassandra` and `eval "$(scripts/services env)"`',
            pytrace=False,
        )
    return cassandra_endpoint.cdc_raw_dir


@pytest.fixture(scope="session")
def cassandra_session(cassandra_endpoint: CassandraEndpoint) -> Iterator[object]:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    # One node, reached at exactly the address we were given (it may be a mapped port).
    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([cassandra_endpoint.host]),
        request_timeout=30,
    )
    cluster = Cluster(
        [cassandra_endpoint.host],
        port=cassandra_endpoint.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
    )
    try:
        session = cluster.connect()
    except Exception as e:
        pytest.fail(
            f"cassandra at {cassandra_endpoint.contact_point} does not answer CQL: {e}\n"
            "Start it with `scripts/services up cassandra`",
            pytrace=False,
        )
    yield session
    cluster.shutdown()


@pytest.fixture(scope="module")
def cassandra_keyspace(cassandra_session, request: pytest.FixtureRequest) -> Iterator[str]:
    name = services.isolated_name("it", request.module.__name__)
    cassandra_session.execute(
        f"CREATE KEYSPACE {name} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    yield name
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {name}")


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_dsn(request: pytest.FixtureRequest) -> str:
    return _values("postgres", request)[services.ENV_VARS["postgres"]]


def _with_database(dsn: str, database: str) -> str:
    base, _, query = dsn.partition("?")
    return base.rsplit("/", 1)[0] + "/" + database + (f"?{query}" if query else "")


@pytest.fixture(scope="module")
async def postgres_database_dsn(
    postgres_dsn: str, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A DSN for a database created for this test module only."""
    import asyncpg

    name = services.isolated_name("it", request.module.__name__, max_len=63)
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(postgres_dsn, name)
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# --------------------------------------------------------------------------- ClickHouse


@pytest.fixture(scope="session")
def clickhouse_url(request: pytest.FixtureRequest) -> str:
    return _values("clickhouse", request)[services.ENV_VARS["clickhouse"]]


@pytest.fixture(scope="module")
async def clickhouse_database(
    clickhouse_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """The name of a ClickHouse database created for this test module only."""
    import aiohttp
    from aiochclient import ChClient

    name = services.isolated_name("it", request.module.__name__, max_len=63)
    async with aiohttp.ClientSession() as http:
        client = ChClient(http, url=clickhouse_url)
        await client.execute(f"CREATE DATABASE {name}")
        yield name
        await client.execute(f"DROP DATABASE IF EXISTS {name}")


# --------------------------------------------------------------------------- TimescaleDB


@pytest.fixture(scope="session")
def timescaledb_dsn(request: pytest.FixtureRequest) -> str:
    """TimescaleDB (locally PGlite: one database, and one connection at a time — use a single
    connection, not a pool; a second concurrent connection waits until the first closes)."""
    return _values("timescaledb", request)[services.ENV_VARS["timescaledb"]]


@pytest.fixture(scope="module")
async def timescaledb_schema(
    timescaledb_dsn: str, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A schema created for this test module only (TimescaleDB here is a single database)."""
    import asyncpg

    name = services.isolated_name("it", request.module.__name__, max_len=63)
    conn = await asyncpg.connect(timescaledb_dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await conn.close()
    yield name
    conn = await asyncpg.connect(timescaledb_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()
