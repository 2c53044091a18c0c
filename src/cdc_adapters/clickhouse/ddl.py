"""Creating and changing one table's ClickHouse objects, safely beside other writers.

Every agent (one per Cassandra node) runs these statements for the tables it writes,
concurrently and at its own pace through schema changes. So each step is idempotent and
leaves the objects usable by writers of the previous step: columns are added to the
aggregating tables before the ingest table (an insert naming a new column must find it
everywhere), a new materialized view is created before older ones are dropped (two views
writing the same states is harmless; none would lose rows), and the current-state view is
replaced by a rename, never dropped first. A table ``<table>`` that is not this sink's
view (the layout of ADR 0006, or an operator's object) stops the sink for that table.
"""

from __future__ import annotations

import asyncio
import secrets

from cdc_adapters.clickhouse.client import ClickHouseClient
from cdc_adapters.clickhouse.sql import qualified, quote_identifier, quote_string
from cdc_adapters.clickhouse.tables import TableLayout
from cdc_adapters.clickhouse.view import view_sql
from cdc_domain.errors import SinkError, TableError

__all__ = ["OLD_LAYOUT", "TableObjects"]

_SWAP_ATTEMPTS = 5

OLD_LAYOUT = (
    "{table} holds the mirror of ADR 0006 (a ReplacingMergeTree with _cdc_state), which "
    "this sink no longer writes; convert it with `cdc-app clickhouse migrate --config "
    "<file> --destination {destination}` (ADR 0010), then restart"
)


class TableObjects:
    """The DDL of the tables a sink writes, through its client."""

    def __init__(self, client: ClickHouseClient, destination: str) -> None:
        self._client = client
        self._destination = destination

    async def ensure(self, layout: TableLayout) -> None:
        """Create what is missing, add missing columns, refresh the views."""
        client = self._client
        await client.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(layout.database)}")
        await self.check_name(layout)
        for statement in layout.create_statements():
            await self._create(statement)
        targets = layout.target_columns()
        for role, table in layout.table_names().items():
            await self._add_columns(layout.database, table, targets[role])
        await self._add_columns(
            layout.database, f"{layout.name}__cdc_ingest", layout.ingest_columns()
        )
        await self.materialized_views(layout)
        await self.refresh_view(layout)

    async def check_name(self, layout: TableLayout) -> None:
        """Refuse a ``<table>`` that is not this sink's view, naming what to do."""
        rows = await self._system(
            "SELECT engine, create_table_query FROM system.tables WHERE database = "
            f"{quote_string(layout.database)} AND name = {quote_string(layout.name)}"
        )
        if not rows:
            return
        engine, query = rows[0]
        table = f"{layout.database}.{layout.name}"
        if engine == "View" and f"{layout.name}__cdc_rows" in query:
            return
        if "_cdc_state" in await self.columns(layout.database, layout.name):
            message = OLD_LAYOUT.format(table=table, destination=self._destination)
        else:
            message = f"{table} exists and is a {engine}, not this sink's current-state view"
        raise TableError(message, table=layout.schema.qualified_name)

    async def columns(self, database: str, table: str) -> dict[str, str]:
        """A table's columns, name -> type, in their order."""
        rows = await self._client.select(
            "SELECT name, type FROM system.columns WHERE database = "
            f"{quote_string(database)} AND table = {quote_string(table)}"
        )
        return {name: column_type for name, column_type in rows}  # noqa: C416 - rows are lists

    async def _add_columns(self, database: str, table: str, wanted: dict[str, str]) -> None:
        existing = await self.columns(database, table)
        for name, column_type in wanted.items():
            if name in existing:
                continue
            try:
                await self._client.execute(
                    f"ALTER TABLE {qualified(database, table)} ADD COLUMN "
                    f"{quote_identifier(name)} {column_type}"
                )
            except SinkError:
                # Another writer may have added it meanwhile (18.16 has no IF NOT EXISTS).
                if name not in await self.columns(database, table):
                    raise

    async def materialized_views(self, layout: TableLayout, *, without: str = "") -> None:
        """Feed each aggregating table from the ingest table by one current view (over
        every cell column both tables have, ``without`` one being dropped), then drop
        the views it supersedes: those that feed a subset of its columns, or, when a
        column is being dropped, every other one."""
        ingest = await self.columns(layout.database, f"{layout.name}__cdc_ingest")
        for role, table in layout.table_names().items():
            target = await self.columns(layout.database, table)
            names = [n for n in target if n != without and (n in ingest or n == "_cdc_ranges")]
            name, create = layout.materialized_view(role, names)
            await self._create(create)
            ours = set(await self.columns(layout.database, name))
            prefix = f"{layout.name}__cdc_mv_{role}_"
            for other in await self._names(layout.database, prefix, "MaterializedView"):
                if other == name:
                    continue
                if without or set(await self.columns(layout.database, other)) <= ours:
                    await self._client.execute(
                        f"DROP TABLE IF EXISTS {qualified(layout.database, other)}"
                    )

    async def refresh_view(self, layout: TableLayout) -> None:
        """Make ``<table>`` the current-state view of this layout, swapping it by a
        rename so readers never find it missing. Writers racing to do the same may each
        find the other's rename done first: the swap is then judged again."""
        view = view_sql(layout)
        database = layout.database
        fresh = f"{layout.name}__cdc_view_{secrets.token_hex(4)}"
        created = False
        try:
            for attempt in range(_SWAP_ATTEMPTS):
                current = await self._system(
                    "SELECT create_table_query FROM system.tables WHERE database = "
                    f"{quote_string(database)} AND name = {quote_string(layout.name)}"
                )
                if current and view.token in current[0][0]:
                    return
                if not created:
                    await self._client.execute(
                        f"CREATE VIEW {qualified(database, fresh)} AS {view.select}"
                    )
                    created = True
                old = f"{layout.name}__cdc_view_old_{secrets.token_hex(4)}"
                swap = f"{qualified(database, fresh)} TO {layout.view}"
                if current:
                    swap = f"{layout.view} TO {qualified(database, old)}, {swap}"
                try:
                    await self._client.execute(f"RENAME TABLE {swap}")
                except SinkError:
                    if attempt == _SWAP_ATTEMPTS - 1:
                        raise
                    continue
                created = False
                await self._client.execute(f"DROP TABLE IF EXISTS {qualified(database, old)}")
                return
        finally:
            if created:
                await self._client.execute(f"DROP TABLE IF EXISTS {qualified(database, fresh)}")

    async def _system(self, sql: str) -> list[list[str]]:
        """A query of ``system.tables``: 18.16 fails it while another writer renames a
        table of the database (the table it listed is gone when it reads its
        definition), so it is asked again, briefly."""
        for attempt in range(_SWAP_ATTEMPTS):
            try:
                return await self._client.select(sql)
            except SinkError as exc:
                if "doesn't exist" not in str(exc) or attempt == _SWAP_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _create(self, statement: str) -> None:
        """A ``CREATE ... IF NOT EXISTS``, which another writer may win meanwhile."""
        try:
            await self._client.execute(statement)
        except SinkError as exc:
            if "already exists" not in str(exc):
                raise

    async def drop_column(self, layout: TableLayout, column: str) -> None:
        """Stop feeding a column, then drop it from the tables and its elements."""
        await self.materialized_views(layout, without=column)
        tables = [f"{layout.name}__cdc_ingest", *layout.table_names().values()]
        for table in tables:
            if column in await self.columns(layout.database, table):
                await self._client.execute(
                    f"ALTER TABLE {qualified(layout.database, table)} DROP COLUMN "
                    f"{quote_identifier(column)}"
                )
        if layout.has_elements:
            await self._client.execute(
                f"ALTER TABLE {layout.elements} DELETE WHERE `_cdc_column` = {quote_string(column)}"
            )

    async def drop_all(self, layout: TableLayout) -> None:
        """Drop the view, the materialized views and the tables of a dropped table."""
        database = layout.database
        await self._client.execute(f"DROP TABLE IF EXISTS {layout.view}")
        for name in await self._names(database, f"{layout.name}__cdc_mv_", "MaterializedView"):
            await self._client.execute(f"DROP TABLE IF EXISTS {qualified(database, name)}")
        purges = [
            qualified(database, f"{layout.name}__cdc_purge_{t}") for t in ("rows", "elements")
        ]
        for table in (layout.ingest, layout.rows, layout.partition, layout.elements, *purges):
            await self._client.execute(f"DROP TABLE IF EXISTS {table}")

    async def _names(self, database: str, prefix: str, engine: str) -> list[str]:
        rows = await self._system(
            "SELECT name FROM system.tables WHERE database = "
            f"{quote_string(database)} AND engine = {quote_string(engine)} "
            f"AND substring(name, 1, {len(prefix.encode())}) = {quote_string(prefix)}"
        )
        return [name for (name,) in rows]
