"""The ClickHouse sink: a current-state mirror in ReplacingMergeTree tables.

ClickHouse has no transactions and no in-place update, so every write is a new version
of a whole row that must already hold the row's full current state. For the keys a
batch touches, the sink takes the last state it wrote (from its bounded cache, else one
``FINAL`` read-back per table), merges the batch's events with Cassandra's cell-level
last-write-wins rules (:mod:`row_state`), and inserts one version per changed key in one
TabSeparated request per table. Re-delivery merges to the same state and writes
nothing, so a crash anywhere converges after replay. ADR 0006 gives the reasoning and
the measurements.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from cdc_adapters.clickhouse.client import ClickHouseClient, RetryPolicy
from cdc_adapters.clickhouse.column_types import RejectedValueError
from cdc_adapters.clickhouse.row_state import NEVER, PartitionState, RowState, dumps
from cdc_adapters.clickhouse.sql import quote_identifier, quote_string
from cdc_adapters.clickhouse.state_cache import LruCache
from cdc_adapters.clickhouse.tables import TableLayout
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import EventsRejectedError
from cdc_domain.events import ChangeEvent, DeletionScope
from cdc_domain.health import HealthReport, HealthStatus
from cdc_domain.ports import SinkBatch
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import ChangeKind, SchemaChange
from cdc_domain.values import value_from_json, value_to_json

__all__ = ["ClickHouseSink", "DropPolicy"]

Key = tuple[Any, ...]
RowKey = tuple[Key, Key]
_LOOKUP_CHARS = 100_000  # well under ClickHouse's default max_query_size of 256 KiB


class DropPolicy(enum.Enum):
    """What a dropped Cassandra column or table does to its ClickHouse counterpart."""

    KEEP = "keep"
    DROP = "drop"


@attrs.define
class _Plan:
    """The rows one batch writes to one table, ready to insert."""

    layout: TableLayout
    rows: list[tuple[RowKey, str, str]] = attrs.field(factory=list)
    partitions: list[tuple[Key, str, str]] = attrs.field(factory=list)


class ClickHouseSink:
    """A mirror of Cassandra tables in ClickHouse (``SELECT ... FINAL WHERE
    _cdc_is_deleted = 0``, or the ``<table>__current`` view, is the current state).

    Built from configuration keys (``url``, ``user``, ``password`` of the ClickHouse
    section). ``database_prefix`` + keyspace names the database of each keyspace's
    tables. ``drop_policy`` (``keep`` or ``drop``) decides what dropped Cassandra columns
    and tables do here. ``cached_rows`` bounds the states kept to skip read-backs; the
    cache assumes this sink is the only writer of its tables.
    """

    def __init__(
        self,
        *,
        url: str,
        name: str = "clickhouse",
        user: str | None = None,
        password: str | None = None,
        database_prefix: str = "",
        drop_policy: DropPolicy | str = DropPolicy.KEEP,
        cached_rows: int = 100_000,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = ClickHouseClient(url, user=user, password=password, retry=retry)
        self._name = name
        self._prefix = database_prefix
        self._drop_policy = DropPolicy(drop_policy)
        self._layouts: dict[str, TableLayout] = {}
        self._rows: LruCache[str | None] = LruCache(cached_rows)
        self._partitions: LruCache[str | None] = LruCache(cached_rows)

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
        try:
            plans = []
            for qualified_name, events in grouped.items():
                schema = batch.schemas.get(qualified_name)
                if schema is None:
                    rejected.update((e.event_id, f"no schema for {qualified_name}") for e in events)
                    continue
                layout = await self._layout(schema)
                plans.append(await self._plan(layout, events, rejected))
            if rejected:
                reasons = sorted(set(rejected.values()))
                raise EventsRejectedError(
                    f"{self._name}: {len(rejected)} event(s) rejected: {'; '.join(reasons[:5])}",
                    list(rejected),
                )
            for plan in plans:
                await self._insert(plan)
        except BaseException:
            # A failed insert may still have landed: forget, and read back next time.
            self._rows.clear()
            self._partitions.clear()
            raise

    async def apply_schema_change(self, change: SchemaChange) -> None:
        change.require_compatible(self.kind, self._name)
        if change.kind is ChangeKind.DROP_TABLE:
            await self._drop_table(change.schema)
        elif change.kind is ChangeKind.DROP_COLUMN:
            layout = await self._layout(change.schema)
            if self._drop_policy is DropPolicy.DROP and change.column is not None:
                await self._drop_column(layout, change.column)
        elif change.kind is ChangeKind.ALTER_TYPE:
            layout = await self._layout(change.schema)
            await self._alter_column(layout, change.column)
        else:
            await self._layout(change.schema)

    async def health(self) -> HealthReport:
        started = time.perf_counter()
        alive = await self._client.ping()
        latency = (time.perf_counter() - started) * 1000
        if alive:
            return HealthReport(self._name, HealthStatus.UP, latency_ms=latency)
        return HealthReport(self._name, HealthStatus.DOWN, latency, "ClickHouse does not answer")

    async def aclose(self) -> None:
        await self._client.aclose()

    def database_for(self, keyspace: str) -> str:
        """The ClickHouse database that holds a keyspace's tables."""
        return self._prefix + keyspace

    # ------------------------------------------------------------------ tables and DDL

    async def _layout(self, schema: TableSchema) -> TableLayout:
        known = self._layouts.get(schema.qualified_name)
        if known is not None and known.schema == schema:
            return known
        features = await self._client.features()
        layout = TableLayout.of(schema, self.database_for(schema.keyspace), features)
        await self._client.execute(
            f"CREATE DATABASE IF NOT EXISTS {quote_identifier(layout.database)}"
        )
        await self._client.execute(layout.create_table())
        if layout.has_clustering:
            await self._client.execute(layout.create_partitions_table())
        existing = await self._columns(layout)
        missing = {n: t for n, t in layout.column_sql().items() if n not in existing}
        for name, sql in missing.items():
            await self._client.execute(
                f"ALTER TABLE {layout.table} ADD COLUMN {quote_identifier(name)} {sql}"
            )
        await self._refresh_view(layout, replace=bool(missing))
        self._layouts[schema.qualified_name] = layout
        return layout

    async def _columns(self, layout: TableLayout) -> dict[str, str]:
        rows = await self._client.select(
            "SELECT name, type FROM system.columns WHERE database = "
            f"{quote_string(layout.database)} AND table = {quote_string(layout.schema.table)}"
        )
        return dict(rows)

    async def _refresh_view(self, layout: TableLayout, *, replace: bool) -> None:
        if replace:
            await self._client.execute(f"DROP TABLE IF EXISTS {layout.view}")
        columns = list(await self._columns(layout))
        await self._client.execute(layout.create_view(columns))

    async def _drop_column(self, layout: TableLayout, column: str) -> None:
        if column in await self._columns(layout):
            await self._client.execute(
                f"ALTER TABLE {layout.table} DROP COLUMN {quote_identifier(column)}"
            )
            await self._refresh_view(layout, replace=True)

    async def _alter_column(self, layout: TableLayout, column: str | None) -> None:
        wanted = dict(layout.values).get(column or "")
        if wanted is None:
            return
        existing = await self._columns(layout)
        if existing.get(column or "") != wanted.sql:
            await self._client.execute(
                f"ALTER TABLE {layout.table} MODIFY COLUMN "
                f"{quote_identifier(column or '')} {wanted.sql}"
            )
            await self._refresh_view(layout, replace=True)

    async def _drop_table(self, schema: TableSchema) -> None:
        layout = self._layouts.pop(schema.qualified_name, None)
        self._rows.clear()
        self._partitions.clear()
        if self._drop_policy is DropPolicy.KEEP:
            return
        if layout is None:
            features = await self._client.features()
            layout = TableLayout.of(schema, self.database_for(schema.keyspace), features)
        for target in (layout.view, layout.table, layout.partitions_table):
            await self._client.execute(f"DROP TABLE IF EXISTS {target}")

    # ------------------------------------------------------------------ one table's batch

    async def _plan(
        self, layout: TableLayout, events: Sequence[ChangeEvent], rejected: dict[str, str]
    ) -> _Plan:
        accepted: list[tuple[ChangeEvent, Key, RowKey | None]] = []
        for event in events:
            reason = _unwritable(layout, event)
            if reason:
                rejected[event.event_id] = reason
                continue
            pk = tuple([event.partition_key[n] for n in layout.partition_names])
            if layout.has_clustering and _partition_wide(event):
                accepted.append((event, pk, None))
            else:
                ck = tuple([event.clustering_key[n] for n in layout.clustering_names])
                accepted.append((event, pk, (pk, ck)))
        touched = {key for _, _, key in accepted if key is not None}
        wide = {pk for _, pk, key in accepted if key is None}
        pks = {pk for _, pk, _ in accepted} if layout.has_clustering else set()
        rows = await self._load_rows(layout, touched, wide)
        partitions = await self._load_partitions(layout, pks)
        row_states = {k: _row_state(v) for k, v in rows.items()}
        part_states = {k: _partition_state(v) for k, v in partitions.items()}
        for event, pk, key in accepted:
            if key is None:
                part_states[pk].apply(event)
            else:
                row_states.setdefault(key, RowState()).apply(event)
        return self._render(layout, accepted, rows, row_states, partitions, part_states, rejected)

    def _render(
        self,
        layout: TableLayout,
        accepted: list[tuple[ChangeEvent, Key, RowKey | None]],
        rows: dict[RowKey, str | None],
        row_states: dict[RowKey, RowState],
        partitions: dict[Key, str | None],
        part_states: dict[Key, PartitionState],
        rejected: dict[str, str],
    ) -> _Plan:
        plan = _Plan(layout)
        changed_partitions = set()
        for pk, partition in part_states.items():
            state = dumps({"k": [value_to_json(v) for v in pk], "p": partition.to_json()})
            if state != partitions.get(pk):
                changed_partitions.add(pk)
                tombstones = (partition.deleted_at, *(t for _, t in partition.ranges), 0)
                version = partition.static.version(max(tombstones))
                fields = [c.encode(v) for (_, c), v in zip(layout.partition_key, pk, strict=True)]
                line = "\t".join([*fields, str(version), _escape(state)])
                plan.partitions.append((pk, state, line))
        clustering = layout.clustering_names
        for key, row in row_states.items():
            pk, ck = key
            part: PartitionState | None = part_states.get(pk)
            floor = part.floor(dict(zip(clustering, ck, strict=True))) if part else NEVER
            row.compact(floor)
            state = dumps({"k": [[value_to_json(v) for v in k] for k in key], "r": row.to_json()})
            if state == rows.get(key) and pk not in changed_partitions:
                continue
            values = row.visible(floor)
            if values is not None and part is not None:
                static = part.static.visible(part.deleted_at)
                values = {**(static or {}), **values}
            try:
                line = _row_line(layout, key, values, row, floor, state)
            except RejectedValueError as exc:
                for event, _, event_key in accepted:
                    if event_key == key:
                        rejected[event.event_id] = str(exc)
                continue
            plan.rows.append((key, state, line))
        return plan

    async def _insert(self, plan: _Plan) -> None:
        layout = plan.layout
        if plan.partitions:
            body = "".join(line + "\n" for _, _, line in plan.partitions)
            await self._client.insert(layout.partitions_insert_target(), _bytes(body))
            for pk, state, _ in plan.partitions:
                self._partitions.put((layout.table, pk), state)
        if plan.rows:
            body = "".join(line + "\n" for _, _, line in plan.rows)
            await self._client.insert(layout.insert_target(), _bytes(body))
            for key, state, _ in plan.rows:
                self._rows.put((layout.table, key), state)

    # ------------------------------------------------------------------ read-back

    async def _load_rows(
        self, layout: TableLayout, keys: set[RowKey], partitions: set[Key]
    ) -> dict[RowKey, str | None]:
        found: dict[RowKey, str | None] = {}
        missing: list[RowKey] = []
        for key in keys:
            hit, state = self._rows.lookup((layout.table, key))
            if hit:
                found[key] = state
            else:
                missing.append(key)
                found[key] = None
        codecs = layout.keys
        lookups = [_tuple_literal(codecs, (*pk, *ck)) for pk, ck in missing]
        wide = [_tuple_literal(layout.partition_key, pk) for pk in partitions]
        for text in await self._lookup(layout.table, codecs, lookups):
            data = json.loads(text)
            key = (_key(data["k"][0]), _key(data["k"][1]))
            found[key] = text
        for text in await self._lookup(layout.table, layout.partition_key, wide):
            data = json.loads(text)
            found[(_key(data["k"][0]), _key(data["k"][1]))] = text
        return found

    async def _load_partitions(self, layout: TableLayout, pks: set[Key]) -> dict[Key, str | None]:
        found: dict[Key, str | None] = {}
        missing = []
        for pk in pks:
            hit, state = self._partitions.lookup((layout.table, pk))
            found[pk] = state
            if not hit:
                missing.append(_tuple_literal(layout.partition_key, pk))
        if missing:
            target = layout.partitions_table
            for text in await self._lookup(target, layout.partition_key, missing):
                found[_key(json.loads(text)["k"])] = text
        return found

    async def _lookup(self, table: str, codecs: Any, literals: list[str]) -> list[str]:
        """``_cdc_state`` of the current version of each key, in chunks of bounded SQL."""
        columns = ", ".join(quote_identifier(n) for n, _ in codecs)
        states: list[str] = []
        for chunk in _chunks(literals, _LOOKUP_CHARS):
            rows = await self._client.select(
                f"SELECT `_cdc_state` FROM {table} FINAL WHERE ({columns}) IN ({', '.join(chunk)})"
            )
            states.extend(row[0] for row in rows)
        return states


def _unwritable(layout: TableLayout, event: ChangeEvent) -> str:
    for name in event.touched_columns:
        if name in layout.unsupported:
            return f"{event.qualified_table}.{name}: {layout.unsupported[name]}"
    names = layout.partition_names
    if any(n not in event.partition_key for n in names):
        return f"{event.qualified_table}: event lacks partition key columns {list(names)}"
    if layout.has_clustering and not _partition_wide(event):
        wanted = layout.clustering_names
        if any(n not in event.clustering_key for n in wanted):
            return f"{event.qualified_table}: event lacks clustering columns {list(wanted)}"
    return ""


def _partition_wide(event: ChangeEvent) -> bool:
    return event.static or event.scope in (DeletionScope.PARTITION, DeletionScope.RANGE)


def _row_line(
    layout: TableLayout,
    key: RowKey,
    values: dict[str, Any] | None,
    row: RowState,
    floor: int,
    state: str,
) -> str:
    fields = [c.encode(v) for (_, c), v in zip(layout.keys, (*key[0], *key[1]), strict=True)]
    shown = values or {}
    for name, codec in layout.values:
        try:
            fields.append(codec.encode(shown.get(name)))
        except (RejectedValueError, TypeError, ValueError, AttributeError) as exc:
            raise RejectedValueError(f"{layout.schema.qualified_name}.{name}: {exc}") from exc
    deleted = values is None
    op = "DELETE" if deleted else row.op[1]
    fields += [str(row.version(floor)), "1" if deleted else "0", op, _escape(state)]
    return "\t".join(fields)


def _tuple_literal(codecs: Any, values: Iterable[Any]) -> str:
    return "(" + ", ".join(c.literal(v) for (_, c), v in zip(codecs, values, strict=True)) + ")"


def _chunks(items: list[str], limit: int) -> Iterable[list[str]]:
    chunk: list[str] = []
    size = 0
    for item in items:
        if chunk and size + len(item) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 2
    if chunk:
        yield chunk


def _key(data: list[Any]) -> Key:
    return tuple(value_from_json(v) for v in data)


def _row_state(text: str | None) -> RowState:
    return RowState() if text is None else RowState.from_json(json.loads(text)["r"])


def _partition_state(text: str | None) -> PartitionState:
    return PartitionState() if text is None else PartitionState.from_json(json.loads(text)["p"])


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _bytes(body: str) -> bytes:
    return body.encode("utf-8", "surrogateescape")
