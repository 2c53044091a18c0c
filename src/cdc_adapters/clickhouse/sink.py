"""The ClickHouse sink: a current-state mirror in ReplacingMergeTree tables.

ClickHouse has no transactions and no in-place update, so every write is a new version
of a whole row that must already hold the row's full current state. The sink groups a
batch's events by key, takes each key's last state (from its bounded cache of parsed
states; new for a key the table's key filter says it cannot hold; else one ``FINAL``
read-back per table for the rest), merges the events with Cassandra's cell-level
last-write-wins rules (:mod:`row_state`), and inserts one version per changed key in one
TabSeparated request per table, reusing each cell's memoised encodings. Re-delivery
merges to the same state and writes nothing, so a crash anywhere converges after
replay. ADR 0006 gives the reasoning and the measurements.
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from cdc_adapters.clickhouse.client import ClickHouseClient, RetryPolicy, refused_table
from cdc_adapters.clickhouse.column_types import RejectedValueError
from cdc_adapters.clickhouse.row_state import (
    NEVER,
    PartitionState,
    RowState,
    cell_json,
    dumps,
)
from cdc_adapters.clickhouse.sql import quote_identifier, quote_string
from cdc_adapters.clickhouse.state_cache import KeyFilter, LruCache
from cdc_adapters.clickhouse.tables import TableLayout
from cdc_domain.destinations import DestinationKind, DroppedColumns
from cdc_domain.errors import EventsRejectedError, SinkError
from cdc_domain.events import ChangeEvent, DeletionScope
from cdc_domain.health import HealthReport, HealthStatus
from cdc_domain.ports import SinkBatch
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import ChangeKind, SchemaChange
from cdc_domain.values import value_from_json, value_to_json

__all__ = ["ClickHouseSink"]

Key = tuple[Any, ...]
RowKey = tuple[Key, Key]
_LOOKUP_CHARS = 100_000  # well under ClickHouse's default max_query_size of 256 KiB


@attrs.define
class _Plan:
    """The rows one batch writes to one table, ready to insert."""

    layout: TableLayout
    rows: list[tuple[RowKey, RowState, str]] = attrs.field(factory=list)
    partitions: list[tuple[Key, str, str]] = attrs.field(factory=list)


class ClickHouseSink:
    """A mirror of Cassandra tables in ClickHouse (``SELECT ... FINAL WHERE
    _cdc_is_deleted = 0``, or the ``<table>__current`` view, is the current state).

    Built from configuration keys (``url``, ``user``, ``password`` of the ClickHouse
    section). ``database_prefix`` + keyspace names the database of each keyspace's
    tables. ``drop_columns`` (``keep`` or ``drop``) decides what dropped Cassandra columns
    and tables do here. ``cached_rows`` bounds the states kept to skip read-backs; the
    cache assumes this sink is the only writer of its tables, and so does the key filter
    (``key_filter_bits`` per table found empty) that skips read-backs of new keys. With
    ``cached_rows=0`` (several writers) every touched key is read back.
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
        cached_rows: int = 100_000,
        key_filter_bits: int = 1 << 23,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = ClickHouseClient(url, user=user, password=password, retry=retry)
        self._name = name
        self._prefix = database_prefix
        self._drop_columns = DroppedColumns(drop_columns)
        self._layouts: dict[str, TableLayout] = {}
        self._rows: LruCache[RowState] = LruCache(cached_rows)
        # Per table written only by this sink since it was empty: the keys it may hold.
        self._known: dict[str, KeyFilter] = {}
        self._key_filter_bits = key_filter_bits if cached_rows > 0 else 0
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
                try:
                    layout = await self._layout(schema)
                    plans.append(await self._plan(layout, events, rejected))
                except SinkError as exc:
                    raise refused_table(exc, qualified_name) from exc
            if rejected:
                reasons = sorted(set(rejected.values()))
                raise EventsRejectedError(
                    f"{self._name}: {len(rejected)} event(s) rejected: {'; '.join(reasons[:5])}",
                    list(rejected),
                )
            for plan in plans:
                try:
                    await self._insert(plan)
                except SinkError as exc:
                    raise refused_table(exc, plan.layout.schema.qualified_name) from exc
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
            if change.column is not None:
                await self._hide_rows_kept_by(layout, change.column)
                if self._drop_columns is DroppedColumns.DROP:
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
        await self._watch_keys(layout.table)
        if layout.has_clustering:
            await self._watch_keys(layout.partitions_table)
        self._layouts[schema.qualified_name] = layout
        return layout

    async def _watch_keys(self, table: str) -> None:
        """Start a key filter for a table found empty: from now on, a key it has not
        seen written needs no read-back (single writer, as the cache assumes)."""
        if not self._key_filter_bits or table in self._known:
            return
        rows = await self._client.select(f"SELECT count() FROM {table}")
        if rows == [["0"]]:
            self._known[table] = KeyFilter(self._key_filter_bits)

    async def _columns(self, layout: TableLayout) -> dict[str, str]:
        rows = await self._client.select(
            "SELECT name, type FROM system.columns WHERE database = "
            f"{quote_string(layout.database)} AND table = {quote_string(layout.schema.table)}"
        )
        return folded_columns(rows)

    async def _refresh_view(self, layout: TableLayout, *, replace: bool) -> None:
        if replace:
            await self._client.execute(f"DROP TABLE IF EXISTS {layout.view}")
        columns = list(await self._columns(layout))
        await self._client.execute(layout.create_view(columns))

    async def _hide_rows_kept_by(self, layout: TableLayout, column: str) -> None:
        """Rewrite the rows that held a value of a column just dropped: those it alone
        kept alive (no row marker, no other cell) are gone for Cassandra, and become
        deleted rows here. Only rows whose state names the column are read."""
        needle = quote_string(json.dumps(column, ensure_ascii=False) + ":")
        rows = await self._client.select(
            f"SELECT `_cdc_state` FROM {layout.table} FINAL "
            f"WHERE `_cdc_is_deleted` = 0 AND position(`_cdc_state`, {needle}) > 0"
        )
        states = dict(_row_state(text) for (text,) in rows)
        if not states:
            return
        for row in states.values():
            row.changed = True
        partitions = {}
        if layout.has_clustering:
            partitions = await self._load_partitions(layout, {pk for pk, _ in states})
        part_states = {k: _partition_state(v) for k, v in partitions.items()}
        plan = self._render(layout, {}, states, partitions, part_states, {})
        plan.partitions.clear()  # the partitions did not change: only their rows' liveness
        await self._insert(plan)

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
        self._known.clear()
        if self._drop_columns is DroppedColumns.KEEP:
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
        # Group first (one state per key, events in arrival order), then merge per key.
        groups: dict[RowKey, list[ChangeEvent]] = {}
        wide: dict[Key, list[ChangeEvent]] = {}
        pks: set[Key] = set()
        partition_key = _getter(layout.partition_names)
        clustering_key = _getter(layout.clustering_names)
        clustering = layout.has_clustering
        for event in events:
            if layout.unsupported:
                reason = _unwritable(layout, event)
                if reason:
                    rejected[event.event_id] = reason
                    continue
            try:
                pk = partition_key(event.partition_key)
                if clustering:
                    pks.add(pk)
                    if _partition_wide(event):
                        wide.setdefault(pk, []).append(event)
                        continue
                key = (pk, clustering_key(event.clustering_key))
            except KeyError:
                reason = _unwritable(layout, event) or f"{event.qualified_table}: key columns"
                rejected[event.event_id] = reason
                continue
            group = groups.get(key)
            if group is None:
                groups[key] = [event]
            else:
                group.append(event)
        row_states = await self._load_rows(layout, groups.keys(), wide.keys())
        partitions = await self._load_partitions(layout, pks)
        part_states = {k: _partition_state(v) for k, v in partitions.items()}
        types = layout.types
        for pk, partition_events in wide.items():
            partition = part_states[pk]
            for event in partition_events:
                partition.apply(event, types)
        for key, row_events in groups.items():
            row = row_states[key]
            for event in row_events:
                row.apply(event, types)
        return self._render(layout, groups, row_states, partitions, part_states, rejected)

    def _render(
        self,
        layout: TableLayout,
        groups: dict[RowKey, list[ChangeEvent]],
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
                line = "\t".join([*fields, str(version), _escape(state)]) + "\n"
                plan.partitions.append((pk, state, line))
        clustering = layout.clustering_names
        for key, row in row_states.items():
            pk, ck = key
            if not row.changed and pk not in changed_partitions:
                continue
            part: PartitionState | None = part_states.get(pk)
            floor = NEVER
            if part is not None:
                floor = part.floor(dict(zip(clustering, ck, strict=True)), layout.descending)
            row.compact(floor)
            try:
                line = _row_line(layout, key, row, floor, part)
            except RejectedValueError as exc:
                for event in groups.get(key, ()):
                    rejected[event.event_id] = str(exc)
                continue
            plan.rows.append((key, row, line))
        return plan

    async def _insert(self, plan: _Plan) -> None:
        layout = plan.layout
        if plan.rows:
            known = self._known.get(layout.table)
            if known is not None:
                for key, row, _ in plan.rows:
                    if row.fresh:
                        known.add(key)
            body = "".join([line for _, _, line in plan.rows])
            await self._client.insert(layout.insert_target(), _bytes(body))
            table = layout.table
            for key, row, _ in plan.rows:
                row.changed = row.fresh = False
                self._rows.put((table, key), row)
        # Partitions last: a partition state that landed means its rows were rewritten.
        if plan.partitions:
            known = self._known.get(layout.partitions_table)
            if known is not None:
                for pk, _, _ in plan.partitions:
                    known.add(pk)
            body = "".join([line for _, _, line in plan.partitions])
            await self._client.insert(layout.partitions_insert_target(), _bytes(body))
            for pk, state, _ in plan.partitions:
                self._partitions.put((layout.table, pk), state)

    # ------------------------------------------------------------------ read-back

    async def _load_rows(
        self, layout: TableLayout, keys: Iterable[RowKey], partitions: Iterable[Key]
    ) -> dict[RowKey, RowState]:
        """The current state of every key (and of every row of ``partitions``): from the
        cache, new for keys the table certainly lacks, else read back in one query."""
        table = layout.table
        known = self._known.get(table)
        lookup = self._rows.lookup
        found: dict[RowKey, RowState] = {}
        missing: list[RowKey] = []
        for key in keys:
            _, row = lookup((table, key))
            if row is not None:
                found[key] = row
            elif known is not None and not known.may_contain(key):
                found[key] = RowState(fresh=True)
            else:
                missing.append(key)
                found[key] = RowState(fresh=True)
        codecs = layout.keys
        lookups = [_tuple_literal(codecs, (*pk, *ck)) for pk, ck in missing]
        wide = [_tuple_literal(layout.partition_key, pk) for pk in partitions]
        for text in await self._lookup(layout.table, codecs, lookups):
            key, row = _row_state(text)
            found[key] = row
        for text in await self._lookup(layout.table, layout.partition_key, wide):
            key, row = _row_state(text)
            if key not in found or found[key].fresh:
                _, cached = lookup((table, key))
                found[key] = cached if cached is not None else row
        return found

    async def _load_partitions(self, layout: TableLayout, pks: set[Key]) -> dict[Key, str | None]:
        found: dict[Key, str | None] = {}
        missing = []
        known = self._known.get(layout.partitions_table)
        for pk in pks:
            hit, state = self._partitions.lookup((layout.table, pk))
            found[pk] = state
            if not hit and (known is None or known.may_contain(pk)):
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


def folded_columns(rows: Iterable[Sequence[str]]) -> dict[str, str]:
    """A table's columns, name -> type, as they were created. Servers before 19.x list
    an ``Array(Tuple(...))`` column as one ``Array`` column per tuple element, named
    ``col.1``, ``col.2``...: those are folded back into ``col``."""
    columns: dict[str, str] = {}
    parts: dict[str, list[tuple[int, str]]] = {}
    for name, column_type in rows:
        base, dot, index = name.rpartition(".")
        if dot and index.isdigit() and column_type.startswith("Array("):
            parts.setdefault(base, []).append((int(index), column_type[len("Array(") : -1]))
        else:
            columns[name] = column_type
    for base, elements in parts.items():
        if base not in columns:
            inner = ", ".join(t for _, t in sorted(elements))
            columns[base] = f"Array(Tuple({inner}))"
    return columns


def _partition_wide(event: ChangeEvent) -> bool:
    return event.static or event.scope in (DeletionScope.PARTITION, DeletionScope.RANGE)


def _row_line(
    layout: TableLayout, key: RowKey, row: RowState, floor: int, part: PartitionState | None
) -> str:
    """The row's TSV line: keys, the visible values (then statics), the metadata and the
    state. Every cell's field and state entry is encoded once and then reused."""
    head = row.key_fields
    if head is None:
        codecs = layout.keys
        head = row.key_fields = "".join(
            [c.encode(v) + "\t" for (_, c), v in zip(codecs, (*key[0], *key[1]), strict=True)]
        )
    deleted = row.gone(floor, layout.dropped)
    if deleted:
        values = layout.null_fields
    else:
        static: RowState | None = None
        static_floor = NEVER
        if part is not None and not part.static.gone(part.deleted_at):
            static, static_floor = part.static, max(part.deleted_at, part.static.deleted_at)
        values = _value_fields(layout, row, max(floor, row.deleted_at), static, static_floor)
    if row.key_json is None:
        row.key_json = dumps([[value_to_json(v) for v in k] for k in key])
    state = f'{{"k":{row.key_json},"r":{row.state_json()}}}'
    if "\\" in state:  # compact JSON has no raw tab or newline; only its escapes need escaping
        state = state.replace("\\", "\\\\")
    op = "DELETE" if deleted else row.op[1]
    return f"{head}{values}\t{row.version(floor)}\t{'1' if deleted else '0'}\t{op}\t{state}\n"


def _value_fields(
    layout: TableLayout, row: RowState, floor: int, static: RowState | None, static_floor: int
) -> str:
    cells, collections = row.cells, row.collections
    fields = []
    for name, codec, null in layout.value_fields:
        try:
            cell = cells.get(name)
            if cell is not None and cell[0] > floor and not cell[1]:
                field = cell[4]
                if field is None:
                    # Both encodings at once (state_json needs the entry next); with both
                    # kept, the value itself is not needed any more.
                    field = codec.encode(cell[2])
                    entry = cell[3] or cell_json(name, cell)
                    cells[name] = (cell[0], cell[1], None, entry, field)
            elif name in collections and (value := collections[name].value(floor)) is not None:
                field = codec.encode(value)
            elif static is not None:
                static_field = _static_field(name, codec, static, static_floor)
                field = null if static_field is None else static_field
            else:
                field = null
        except (RejectedValueError, TypeError, ValueError, AttributeError) as exc:
            raise RejectedValueError(f"{layout.schema.qualified_name}.{name}: {exc}") from exc
        fields.append(field)
    return "\t".join(fields)


def _static_field(name: str, codec: Any, static: RowState, floor: int) -> str | None:
    cell = static.cells.get(name)
    if cell is not None and cell[0] > floor and not cell[1]:
        if cell[4] is None:
            static.cells[name] = cell = (cell[0], cell[1], cell[2], cell[3], codec.encode(cell[2]))
        return cell[4]
    collection = static.collections.get(name)
    value = collection.value(floor) if collection is not None else None
    return None if value is None else str(codec.encode(value))


def _getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], Key]:
    """``tuple(values[n] for n in names)``, as fast as it gets; KeyError when one lacks."""
    if not names:
        return lambda _: ()
    if len(names) == 1:
        (name,) = names
        return lambda values: (values[name],)
    get = operator.itemgetter(*names)
    return lambda values: get(values)


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


def _row_state(text: str) -> tuple[RowKey, RowState]:
    data = json.loads(text)
    return (_key(data["k"][0]), _key(data["k"][1])), RowState.from_json(data["r"])


def _partition_state(text: str | None) -> PartitionState:
    return PartitionState() if text is None else PartitionState.from_json(json.loads(text)["p"])


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _bytes(body: str) -> bytes:
    return body.encode("utf-8", "surrogateescape")
