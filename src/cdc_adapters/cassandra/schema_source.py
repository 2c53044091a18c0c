"""The SchemaSource port over a live node's ``system_schema``, and the agent's one
schema catalog.

The change source decodes with this source's :class:`SchemaCatalog` and refreshes it
when the node's schema version changes, so what the use case and dead letter replay ask
here is what the reader decodes with, never a copy loaded once at start-up.

The driver's calls block, so each refresh runs in a worker thread. ``tables`` lists the
user tables (system keyspaces are left out: nothing replicates them); the catalog keeps
every table, system ones included, because the commit log holds their mutations too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from cdc_adapters.cassandra.driver import CassandraConnection
from cdc_adapters.cassandra.schema_catalog import SYSTEM_KEYSPACES, SchemaCatalog
from cdc_domain.errors import TransientError
from cdc_domain.health import HealthReport, HealthStatus
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import SchemaChange, SchemaDiff

__all__ = ["CassandraSchemaSource"]

Tables = dict[tuple[str, str], TableSchema]


def _user_tables(catalog: SchemaCatalog) -> Tables:
    return {
        (s.keyspace, s.table): s
        for s in catalog.current().values()
        if s.keyspace not in SYSTEM_KEYSPACES
    }


class CassandraSchemaSource:
    """Table schemas of the node at ``hosts[0]`` (the node whose ``cdc_raw`` the agent
    reads), and what changed between refreshes. ``schema_refresh_s`` bounds how long a
    schema change can go unseen should the version check miss it."""

    def __init__(
        self,
        *,
        hosts: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        schema_refresh_s: float = 60.0,
    ) -> None:
        self._connection = CassandraConnection(hosts, username=username, password=password)
        self._catalog = SchemaCatalog(
            self._connection.load_schemas,
            version=self._connection.schema_version,
            refresh_every_s=schema_refresh_s,
        )
        self._diff = SchemaDiff()
        self._seen: Tables | None = None
        self._lock = asyncio.Lock()

    @property
    def connection(self) -> CassandraConnection:
        """The agent's one cluster connection, which snapshots read through too."""
        return self._connection

    @property
    def catalog(self) -> SchemaCatalog:
        """The catalog the change source decodes with and keeps refreshed."""
        return self._catalog

    async def _current(self) -> Tables:
        if not self._catalog.loaded:
            async with self._lock:
                if not self._catalog.loaded:
                    await asyncio.to_thread(self._catalog.refresh)
        return _user_tables(self._catalog)

    async def table(self, keyspace: str, table: str) -> TableSchema | None:
        return (await self._current()).get((keyspace, table))

    async def tables(self) -> Mapping[tuple[str, str], TableSchema]:
        return await self._current()

    async def refresh(self) -> list[SchemaChange]:
        """Reload from the node and return the changes since the previous load (none
        at the first load, which is the baseline)."""
        async with self._lock:
            before = self._seen
            await asyncio.to_thread(self._catalog.refresh)
            self._seen = _user_tables(self._catalog)
            return [] if before is None else self._diff.keyspaces(before, self._seen)

    async def health(self) -> HealthReport:
        """The node answers CQL: ``SELECT release_version FROM system.local``."""
        started = time.monotonic()
        try:
            version = await asyncio.to_thread(self._connection.release_version)
        except TransientError as exc:
            return HealthReport("cassandra", HealthStatus.DOWN, None, str(exc))
        latency = (time.monotonic() - started) * 1000
        return HealthReport(
            "cassandra", HealthStatus.UP, latency, f"{self._connection.node} {version}"
        )

    async def aclose(self) -> None:
        await asyncio.to_thread(self._connection.close)
