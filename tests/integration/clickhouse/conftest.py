"""Every ClickHouse test runs twice: against Debian's ClickHouse 18.16 server (the
``clickhouse_url`` service) and against a current engine (chdb, ClickHouse 26.x, served
in this process by ``tests.support.chdb_http``). The adapter code is the same for both;
it picks types from the server's version.

Each test module gets a fresh namespace per server: every sink a test builds writes to
databases named ``<namespace><n>_<keyspace>``, all dropped when the module ends.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cdc_adapters.clickhouse import ClickHouseClient, ClickHouseSink, RetryPolicy
from cdc_domain.schema import TableSchema
from tests.contract.sink_contract import SCHEMA as CONTRACT_SCHEMA
from tests.integration import services
from tests.integration.clickhouse.reading import mirror_rows
from tests.support.chdb_http import ChdbHttpServer

SERVERS = ("clickhouse-18.16", "chdb-current")
FAST_RETRY = RetryPolicy(attempts=3, max_seconds=5.0, initial_wait=0.05, max_wait=0.5)


@pytest.fixture(scope="session")
async def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with ChdbHttpServer(str(tmp_path_factory.mktemp("chdb"))) as server:
        yield server.url


@pytest.fixture(scope="module", params=SERVERS)
def server_url(request: pytest.FixtureRequest) -> str:
    if request.param == "chdb-current":
        return str(request.getfixturevalue("chdb_url"))
    return str(request.getfixturevalue("clickhouse_url"))


@pytest.fixture(scope="module")
async def namespace(server_url: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A database-name prefix for this module; its databases are dropped afterwards."""
    prefix = services.isolated_name("it", request.module.__name__, max_len=40) + "_"
    yield prefix
    client = ClickHouseClient(server_url)
    try:
        rows = await client.select("SELECT name FROM system.databases")
        for (name,) in rows:
            if name.startswith(prefix):
                await client.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        await client.aclose()


_counter = itertools.count()

SinkPair = tuple[ClickHouseSink, Callable[..., Awaitable[dict]]]


@pytest.fixture
async def make_sink(
    server_url: str, namespace: str
) -> AsyncIterator[Callable[..., Awaitable[SinkPair]]]:
    """Builds a sink over fresh databases and a ``read_back(table)`` of what readers see."""
    made: list[ClickHouseSink] = []

    async def make(**options) -> SinkPair:
        options.setdefault("database_prefix", f"{namespace}{next(_counter)}_")
        options.setdefault("retry", FAST_RETRY)
        sink = ClickHouseSink(url=server_url, name="clickhouse", **options)
        made.append(sink)

        async def read_back(schema: TableSchema = CONTRACT_SCHEMA) -> dict:
            return await mirror_rows(server_url, sink.database_for(schema.keyspace), schema)

        return sink, read_back

    yield make
    for sink in made:
        await sink.aclose()
