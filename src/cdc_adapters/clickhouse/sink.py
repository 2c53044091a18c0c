"""The ClickHouse sink: a current-state mirror that the engine merges itself.

Each event becomes one small row of the table's ``Null`` ingest table (one INSERT per
table and batch); materialized views fold it into aggregating tables whose states are
Cassandra's last-write-wins, as strings whose maximum is the version Cassandra keeps
(:mod:`cells`). Merging is commutative and idempotent, so the state is a function of the
set of events delivered, whatever their order, their duplicates, or how many agents
write them: nothing is read back before a write, nothing is cached between batches, and
a crash anywhere converges after replay. ``<table>`` is a view of the current state
(:mod:`view`). ADR 0010 gives the reasoning and the measurements.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from cdc_adapters.clickhouse.client import (
    ClickHouseClient,
    RetryPolicy,
    error_code,
    refused_table,
)
from cdc_adapters.clickhouse.column_types import RejectedValueError
from cdc_adapters.clickhouse.ddl import TableObjects
from cdc_adapters.clickhouse.encoding import LineEncoder
from cdc_adapters.clickhouse.migration import old_events, old_layout
from cdc_adapters.clickhouse.purge import purge_expired
from cdc_adapters.clickhouse.tables import TableLayout
from cdc_domain.destinations import DestinationKind, DroppedColumns
from cdc_domain.errors import EventsRejectedError, SinkError
from cdc_domain.events import ChangeEvent, DeletionScope
from cdc_domain.health import HealthReport, HealthStatus
from cdc_domain.ports import SinkBatch
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import ChangeKind, SchemaChange

__all__ = ["ClickHouseSink"]

_COLUMNS_MOVED = frozenset({10, 16})
"""NOT_FOUND_COLUMN_IN_BLOCK (a materialized view reads a column the insert did not
name) and NO_SUCH_COLUMN_IN_TABLE (the insert names a column no longer there): the
ingest table's columns changed under an insert made for an older or newer schema."""


class ClickHouseSink:
    """A mirror of Cassandra tables in ClickHouse; ``<database>.<table>`` is the view
    of each table's current state.

    Built from configuration keys (``url``, ``user``, ``password`` of the ClickHouse
    section). ``database_prefix`` + keyspace names the database of each keyspace's
    tables. ``drop_columns`` (``keep`` or ``drop``) decides what dropped Cassandra columns
    and tables do here. Any number of sinks may write the same tables at once (one agent
    per Cassandra node). ``purge_expired_after`` (seconds; None: never) deletes, at most
    that often, rows that have been dead (deleted, or expired) for at least that long: it
    is this mirror's ``gc_grace_seconds``, so a replay of events older than that could
    bring back what it deleted.
    """

    def __init__(
        self,
        *,
        url: str,
        name: str = "clickhouse",
        user: str | None = None,
        password: str | None = None,
        database_prefix: str = "",
        drop_columns: DroppedColumns = DroppedColumns.KEEP,
        purge_expired_after: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = ClickHouseClient(url, user=user, password=password, retry=retry)
        self._name = name
        self._prefix = database_prefix
        self._drop_columns = DroppedColumns(drop_columns)
        self._objects = TableObjects(self._client, name)
        self._layouts: dict[str, tuple[TableLayout, LineEncoder]] = {}
        self._server_columns: dict[str, dict[str, str]] = {}
        self._purge_after = purge_expired_after
        self._purged: dict[str, float] = {}
        self._purging: asyncio.Task[None] | None = None
        self._purge_error = ""

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> DestinationKind:
        return DestinationKind.CLICKHOUSE

    @property
    def commits_offsets(self) -> bool:
        return False

    async def write(self, batch: SinkBatch) -> None:
        grouped: dict[str, list[ChangeEvent]] = {}
        for event in batch.events:
            grouped.setdefault(event.qualified_table, []).append(event)
        rejected: dict[str, str] = {}
        bodies: list[tuple[TableLayout, bytes]] = []
        for qualified_name, events in grouped.items():
            schema = batch.schemas.get(qualified_name)
            if schema is None:
                rejected.update((e.event_id, f"no schema for {qualified_name}") for e in events)
                continue
            try:
                layout, encoder = await self._layout(schema)
            except SinkError as exc:
                raise refused_table(exc, qualified_name) from exc
            body = _body(layout, encoder, events, rejected)
            if body:
                bodies.append((layout, body))
        if rejected:
            reasons = sorted(set(rejected.values()))
            raise EventsRejectedError(
                f"{self._name}: {len(rejected)} event(s) rejected: {'; '.join(reasons[:5])}",
                list(rejected),
            )
        for layout, body in bodies:
            try:
                await self._insert(layout, body)
            except SinkError as exc:
                raise refused_table(exc, layout.schema.qualified_name) from exc
        self._purge_when_due([layout for layout, _ in bodies])

    async def apply_schema_change(self, change: SchemaChange) -> None:
        change.require_compatible(self.kind, self._name)
        try:
            if change.kind is ChangeKind.DROP_TABLE:
                await self._drop_table(change.schema)
                return
            layout, _ = await self._layout(change.schema)
            if (
                change.kind is ChangeKind.DROP_COLUMN
                and change.column is not None
                and self._drop_columns is DroppedColumns.DROP
            ):
                await self._objects.drop_column(layout, change.column)
        except SinkError as exc:
            raise refused_table(exc, change.schema.qualified_name) from exc

    async def health(self) -> HealthReport:
        started = time.perf_counter()
        alive = await self._client.ping()
        latency = (time.perf_counter() - started) * 1000
        if not alive:
            return HealthReport(
                self._name, HealthStatus.DOWN, latency, "ClickHouse does not answer"
            )
        return HealthReport(self._name, HealthStatus.UP, latency, self._purge_error)

    async def aclose(self) -> None:
        if self._purging is not None:
            self._purging.cancel()
            await asyncio.gather(self._purging, return_exceptions=True)
        await self._client.aclose()

    def database_for(self, keyspace: str) -> str:
        """The ClickHouse database that holds a keyspace's tables."""
        return self._prefix + keyspace

    async def migrate(self, schema: TableSchema, *, lines_per_insert: int = 10_000) -> int | None:
        """Convert the table from the layout of ADR 0006 (``cdc-app clickhouse migrate``):
        the old tables are set aside (renamed) and their states written as events into
        this layout. Returns how many states were converted; None when the table has no
        old layout. Safe to run again after a failure, and while agents write."""
        database = self.database_for(schema.keyspace)
        old = await old_layout(self._client, database, schema)
        if old is None:
            return None
        if not old.renamed:
            await old.set_aside(self._client)
        layout, encoder = await self._layout(schema)
        converted = 0
        lines: list[str] = []
        async for partition, state in old.states(self._client):
            converted += 1
            for event in old_events(schema, partition, state):
                line = encoder.line(event)
                if line is not None:
                    lines.append(line)
            if len(lines) >= lines_per_insert:
                await self._client.insert(layout.insert_target(), _encoded(lines))
                lines = []
        if lines:
            await self._client.insert(layout.insert_target(), _encoded(lines))
        return converted

    async def _insert(self, layout: TableLayout, body: bytes) -> None:
        """Insert the lines into the ingest table as the server has it now. An agent
        whose schema is older than another's (it reads further back in its commit log)
        finds columns the other added, which the materialized views now read, and under
        ``drop_columns: drop`` misses columns the other dropped: its lines are then
        reshaped to the server's columns (a cell it does not know is untouched, the
        empty string) until its own schema catches up."""
        table = layout.schema.qualified_name
        for attempt in range(2):
            server = self._server_columns.get(table)
            try:
                if server is None:
                    await self._client.insert(layout.insert_target(), body)
                else:
                    await self._client.insert(*_reshaped(layout, body, server))
                return
            except SinkError as exc:
                if error_code(exc) not in _COLUMNS_MOVED or attempt:
                    raise
            ingest = await self._objects.columns(layout.database, f"{layout.name}__cdc_ingest")
            if list(ingest) == list(layout.ingest_columns()):
                self._server_columns.pop(table, None)
            else:
                self._server_columns[table] = ingest

    async def _layout(self, schema: TableSchema) -> tuple[TableLayout, LineEncoder]:
        known = self._layouts.get(schema.qualified_name)
        if known is not None and known[0].schema == schema:
            return known
        self._server_columns.pop(schema.qualified_name, None)
        features = await self._client.features()
        keep = self._drop_columns is DroppedColumns.KEEP
        layout = TableLayout.of(
            schema, self.database_for(schema.keyspace), features, keep_dropped=keep
        )
        await self._objects.ensure(layout)
        made = layout, LineEncoder(layout)
        self._layouts[schema.qualified_name] = made
        return made

    async def _drop_table(self, schema: TableSchema) -> None:
        known = self._layouts.pop(schema.qualified_name, None)
        if self._drop_columns is DroppedColumns.KEEP:
            return
        if known is None:
            features = await self._client.features()
            layout = TableLayout.of(schema, self.database_for(schema.keyspace), features)
        else:
            layout = known[0]
        await self._objects.drop_all(layout)

    def _purge_when_due(self, layouts: Sequence[TableLayout]) -> None:
        """Start a purge of the tables just written whose last one is older than
        ``purge_expired_after``, in the background, one at a time."""
        after = self._purge_after
        if after is None or (self._purging is not None and not self._purging.done()):
            return
        now = time.monotonic()
        due = [
            layout
            for layout in layouts
            if now - self._purged.get(layout.schema.qualified_name, -after) >= after
        ]
        if not due:
            return
        for layout in due:
            self._purged[layout.schema.qualified_name] = now
        self._purging = asyncio.create_task(self._purge(due, after))

    async def _purge(self, layouts: Sequence[TableLayout], after: float) -> None:
        try:
            for layout in layouts:
                await purge_expired(self._client, layout, after)
        except SinkError as exc:
            self._purge_error = f"the last purge failed (it is tried again later): {exc}"
        else:
            self._purge_error = ""


def _body(
    layout: TableLayout,
    encoder: LineEncoder,
    events: Sequence[ChangeEvent],
    rejected: dict[str, str],
) -> bytes:
    """The ingest lines of one table's events; what cannot be written goes to
    ``rejected`` (event id -> reason)."""
    lines: list[str] = []
    line = encoder.line
    unsupported = layout.unsupported
    for event in events:
        if unsupported:
            reason = _unsupported(layout, event)
            if reason:
                rejected[event.event_id] = reason
                continue
        try:
            text = line(event)
        except KeyError:
            rejected[event.event_id] = _missing_key(layout, event)
            continue
        except (RejectedValueError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            rejected[event.event_id] = f"{event.qualified_table}: {exc}"
            continue
        if text is not None:
            lines.append(text)
    return _encoded(lines)


def _reshaped(layout: TableLayout, body: bytes, server: dict[str, str]) -> tuple[str, bytes]:
    """The insert target and lines for the ingest table's ``server`` columns: a column
    the layout lacks is a cell this schema does not know (untouched: empty), one the
    server lacks is left out. Only in the moments two agents' schemas differ."""
    index = {name: i for i, name in enumerate(layout.ingest_columns())}
    names = [n for n, kind in server.items() if n in index or kind == "String"]
    picks = [index.get(n) for n in names]
    lines = []
    for line in body.split(b"\n")[:-1]:
        fields = line.split(b"\t")  # TSV escapes tabs and newlines inside values
        lines.append(b"\t".join(b"" if i is None else fields[i] for i in picks))
    return layout.insert_target(names), b"".join(line + b"\n" for line in lines)


def _encoded(lines: list[str]) -> bytes:
    return "".join(lines).encode("utf-8", "surrogateescape")


def _unsupported(layout: TableLayout, event: ChangeEvent) -> str:
    for name in event.touched_columns:
        if name in layout.unsupported:
            return f"{event.qualified_table}.{name}: {layout.unsupported[name]}"
    return ""


def _missing_key(layout: TableLayout, event: ChangeEvent) -> str:
    names = layout.partition_names
    if any(n not in event.partition_key for n in names):
        return f"{event.qualified_table}: event lacks partition key columns {list(names)}"
    wide = event.static or event.scope in (DeletionScope.PARTITION, DeletionScope.RANGE)
    if layout.has_clustering and not wide:
        wanted = list(layout.clustering_names)
        return f"{event.qualified_table}: event lacks clustering columns {wanted}"
    return f"{event.qualified_table}: a range bound that is not a clustering prefix"
