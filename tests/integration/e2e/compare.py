"""What Cassandra holds, what each destination holds, in one comparable form.

Every reader returns ``{(partition key, clustering key): {column: value}}`` with null
and empty values left out (Cassandra has no empty collections, only absent cells) and a
static-only partition's clustering key as ``()``. Values are canonical: sets and maps
sorted, timestamps as epoch milliseconds. Cassandra's PII columns are masked with the
pipeline's policy before the comparison, so a destination holding the real value fails.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cdc_adapters.cassandra import CassandraChangeSource, CassandraSchemaSource
from cdc_adapters.cassandra.driver import CassandraConnection
from cdc_adapters.postgres.layout import TableLayout
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.read_back import mirror_rows as postgres_mirror_rows
from cdc_adapters.postgres.values import from_json
from cdc_domain.cql_types import CqlType
from cdc_domain.destinations import DestinationKind
from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    ClusteringRange,
    CollectionDelta,
    CollectionElement,
    DeletionScope,
    Operation,
    SourcePosition,
)
from cdc_domain.identity import write_id
from cdc_domain.masking import MaskingPolicy
from cdc_domain.mirror import MirrorState
from cdc_domain.schema import ClusteringOrder, TableSchema
from cdc_domain.values import UdtValue
from tests.integration.clickhouse.reading import mirror_rows as clickhouse_mirror_rows

Rows = dict[tuple[tuple[Any, ...], tuple[Any, ...]], dict[str, Any]]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def canonical(value: Any) -> Any:
    """A value as every reader can produce it; None for null and empty collections."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (aware - _EPOCH) // dt.timedelta(milliseconds=1)
    if isinstance(value, str | bytes | int | float):
        return value
    if isinstance(value, UdtValue):  # as the mirror shows one: its set fields by name
        return canonical({n: v for n, v in value.fields if v is not None})
    if isinstance(value, Mapping) or hasattr(value, "items"):
        items = sorted((canonical(k), canonical(v)) for k, v in value.items())
        return ("map", tuple(items)) if items else None
    if isinstance(value, list | tuple):
        return ("list", tuple(canonical(v) for v in value)) if value else None
    if isinstance(value, Iterable):  # set, frozenset, the driver's SortedSet
        elements = sorted(canonical(v) for v in value)
        return ("set", tuple(elements)) if elements else None
    return value


def _plain(value: Any) -> Any:
    """A driver value as the domain holds it (what the masking policy expects)."""
    if hasattr(value, "_fields"):  # a UDT: the driver makes a named tuple of its fields
        return UdtValue(tuple((n, _plain(getattr(value, n))) for n in value._fields))
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return frozenset(_plain(v) for v in value)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def schemas(hosts: str, keyspace: str) -> dict[str, TableSchema]:
    """The keyspace's current table schemas, by table name."""
    connection = CassandraConnection(hosts.split(","))
    try:
        return {s.table: s for s in connection.load_schemas([keyspace])}
    finally:
        connection.close()


def cassandra_rows(session: Any, schema: TableSchema, policy: MaskingPolicy) -> Rows:
    """The table as CQL returns it, classified columns masked as the pipeline masks them."""
    partition = [c.name for c in schema.partition_key]
    clustering = [c.name for c in schema.clustering]
    keys = set(partition + clustering)
    rows: Rows = {}
    for row in session.execute(f"SELECT * FROM {schema.keyspace}.{schema.table}"):
        record = row._asdict()
        values = {k: _plain(v) for k, v in record.items() if k not in keys and v is not None}
        masked = _masked(policy, schema, {n: record[n] for n in partition}, values)
        ck = tuple(record[n] for n in clustering)
        key = (_canonical_key(record[n] for n in partition), () if all(v is None for v in ck)
               else _canonical_key(ck))  # fmt: skip
        rows[key] = _canonical_values(masked)
    return rows


def _masked(
    policy: MaskingPolicy, schema: TableSchema, pk: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    event = ChangeEvent.create(
        operation=Operation.UPDATE,
        keyspace=schema.keyspace,
        table=schema.table,
        partition_key=pk,
        columns=values,
        timestamp_micros=0,
        captured_at=_EPOCH,
        position=SourcePosition(0, 0),
    )
    return dict(policy.apply(event).columns)


def _canonical_key(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(canonical(v) for v in values)


def _canonical_values(values: Mapping[str, Any]) -> dict[str, Any]:
    result = {name: canonical(v) for name, v in values.items()}
    return {name: v for name, v in result.items() if v is not None}


def _canonical_rows(rows: Mapping[Any, Mapping[str, Any]], columns: set[str]) -> Rows:
    """A destination's rows, limited to the columns Cassandra has now (destinations keep
    dropped columns by default)."""
    return {
        (_canonical_key(pk), _canonical_key(ck)): _canonical_values(
            {k: v for k, v in values.items() if k in columns}
        )
        for (pk, ck), values in rows.items()
    }


async def postgres_rows(connection: Any, schema: TableSchema) -> Rows:
    """The ``<table>__live`` view of the mirror in schema ``keyspace`` (the default naming)."""
    layout = TableLayout.build(schema, Naming(), DestinationKind.POSTGRES)
    exists = await connection.fetchval("SELECT to_regclass($1)", f'{layout.schema}."{layout.view}"')
    if exists is None:
        return {}
    return _canonical_rows(await postgres_mirror_rows(connection, layout), _columns(schema))


async def clickhouse_rows(url: str, database: str, schema: TableSchema) -> Rows:
    """The table's current-state view (``SELECT ... FROM <keyspace>.<table>``)."""
    rows = await clickhouse_mirror_rows(url, database, schema)
    return _canonical_rows(rows, _columns(schema))


def _columns(schema: TableSchema) -> set[str]:
    keys = {c.name for c in schema.primary_key}
    return {c.name for c in schema.columns if c.name not in keys}


def differences(expected: Rows, actual: Rows, limit: int = 5, *, float_ulps: int = 0) -> list[str]:
    """A few readable differences, empty when equal. ``float_ulps`` tolerates doubles
    that many units in the last place apart (see :func:`clickhouse_float_ulps`)."""
    problems = []
    for key in sorted(set(expected) | set(actual), key=repr):
        want, got = expected.get(key), actual.get(key)
        if not _same(want, got, float_ulps):
            problems.append(f"{key}: cassandra {want} != destination {got}")
            if len(problems) >= limit:
                problems.append(f"... {_count(expected, actual)} rows differ in all")
                break
    return problems


def clickhouse_float_ulps(version: str) -> int:
    """ClickHouse 18.16's text parser reads about one double in ten a unit in the last
    place off (measured: never more than one), whatever the decimal spelling; current
    servers read them exactly. ADR 0006 records it as a limit of the old server; since
    ADR 0010 a double column is exact there too, a double inside a collection is not."""
    return 1 if version.startswith("18.") else 0


def _same(want: Any, got: Any, ulps: int) -> bool:
    if ulps and isinstance(want, float) and isinstance(got, float):
        return want == got or abs(_ordinal(want) - _ordinal(got)) <= ulps
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(_same(want[k], got[k], ulps) for k in want)
    if isinstance(want, tuple) and isinstance(got, tuple):
        return len(want) == len(got) and all(
            _same(a, b, ulps) for a, b in zip(want, got, strict=True)
        )
    return bool(want == got)


def _ordinal(value: float) -> int:
    (bits,) = struct.unpack("<q", struct.pack("<d", value))
    return bits if bits >= 0 else -(bits & 0x7FFFFFFFFFFFFFFF)


def _count(expected: Rows, actual: Rows) -> int:
    return sum(expected.get(k) != actual.get(k) for k in set(expected) | set(actual))


async def history(connection: Any, schema_name: str, table: str) -> dict[str, Any]:
    """A TimescaleDB history table: its event ids, the write ids of the stream's rows
    (all but ``SNAPSHOT``), and its row count per operation."""
    exists = await connection.fetchval("SELECT to_regclass($1)", f'"{schema_name}"."{table}"')
    if exists is None:
        return {"ids": [], "streamed": [], "ops": {}}
    rows = await connection.fetch(
        f'SELECT "_cdc_event_id", "_cdc_write_id", "_cdc_op" FROM "{schema_name}"."{table}"'
    )
    ops = await connection.fetch(
        f'SELECT "_cdc_op" AS op, count(*) AS n FROM "{schema_name}"."{table}" GROUP BY 1'
    )
    return {
        "ids": [r["_cdc_event_id"] for r in rows],
        "streamed": [r["_cdc_write_id"] for r in rows if r["_cdc_op"] != "SNAPSHOT"],
        "ops": {r["op"]: r["n"] for r in ops},
    }


async def captured_writes(
    reference_dir: Path,
    hosts: str,
    keyspace: str,
    policy: MaskingPolicy,
    partition_id: str = "node1",
) -> dict[str, set[str]]:
    """The write ids of every event the source produces from an untouched copy of
    ``cdc_raw``, masked by ``policy`` as the pipeline masks them, by table: the writes
    the pipeline had to deliver. Write ids, not event ids: two writes of the same cells
    at the same time (a ``USING TIMESTAMP`` statement run twice) are one write, which
    the history holds once."""
    schemas = CassandraSchemaSource(hosts=hosts.split(","))
    source = CassandraChangeSource(
        partition_id=partition_id,
        cdc_raw_dir=reference_dir,
        schemas=schemas,
        tables=[f"{keyspace}.*"],
    )
    writes: dict[str, set[str]] = {}
    after = None
    try:
        while True:
            batch = await source.read(after, 20_000)
            if batch.end is None:
                return writes
            for event in batch.events:
                writes.setdefault(event.table, set()).add(write_id(policy.apply(event)))
            after = batch.end
    finally:
        await source.aclose()
        await schemas.aclose()


async def history_rows(connection: Any, schema_name: str, schema: TableSchema) -> Rows:
    """The current state a TimescaleDB history implies: its rows replayed as events into
    the reference semantics (:class:`~cdc_domain.mirror.MirrorState`), expiry ignored as
    the other destinations ignore it. Elements take their event's write time (the
    history keeps no other), which is theirs for every event the pipeline writes. A
    snapshot event is recorded as ``SNAPSHOT``, which does not say which of a row's
    snapshot events carried its row marker: each is read as an insert (a marker at
    each of the row's write times, where Cassandra has one at the oldest)."""
    table = f'"{schema_name}"."{schema.table}"'
    if await connection.fetchval("SELECT to_regclass($1)", table) is None:
        return {}
    state = MirrorState()
    state.define(schema)
    for row in await connection.fetch(f"SELECT * FROM {table}"):
        state.apply(_history_event(row, schema), schema)
    return _canonical_rows(state.rows(schema.qualified_name), _columns(schema))


def _history_event(row: Any, schema: TableSchema) -> ChangeEvent:
    types = {c.name: c.type for c in (*schema.columns, *schema.dropped_columns)}
    operation = row["_cdc_op"]
    scope = DeletionScope(row["_cdc_scope"]) if row["_cdc_scope"] else None
    static = bool(row["_cdc_static"])
    keyed = scope not in (DeletionScope.PARTITION, DeletionScope.RANGE) and not static
    stamp = row["_cdc_writetime"]
    columns = _json(row["_cdc_columns"])
    collections = _json(row["_cdc_collections"])
    return ChangeEvent.create(
        operation=Operation.INSERT if operation == "SNAPSHOT" else Operation(operation),
        keyspace=schema.keyspace,
        table=schema.table,
        partition_key={c.name: row[c.name] for c in schema.partition_key},
        clustering_key={c.name: row[c.name] for c in schema.clustering} if keyed else None,
        columns={n: from_json(types[n], v) for n, v in columns.items()},
        deleted_columns=tuple(row["_cdc_deleted_columns"] or ()),
        collections={n: _history_delta(types[n], d, stamp) for n, d in collections.items()},
        scope=scope,
        clustering_range=_history_range(_json(row["_cdc_range"]), schema, types),
        static=static,
        timestamp_micros=stamp,
        captured_at=row["_cdc_captured_at"],
        position=SourcePosition(row["_cdc_segment"], row["_cdc_offset"], row["_cdc_index"]),
        event_id=row["_cdc_event_id"],
    )


def _json(value: Any) -> Any:
    return (json.loads(value) if isinstance(value, str) else value) or {}


def _history_delta(cql: CqlType, delta: Mapping[str, Any], stamp: int) -> CollectionDelta:
    fields = dict(zip(cql.field_names, cql.params, strict=True)) if cql.is_udt else {}

    def key(k: Any) -> Any:
        if cql.name == "list":
            return uuid.UUID(k)
        return k if cql.is_udt else from_json(cql.params[0], k)

    def value(k: Any, v: Any) -> Any:
        if cql.name == "set":
            return None
        return from_json(fields[k] if cql.is_udt else cql.params[-1], v)

    kind = "udt" if cql.is_udt else cql.name
    return CollectionDelta(
        kind,
        overwritten=delta["overwritten"],
        elements=tuple(CollectionElement(key(k), value(k, v), stamp) for k, v in delta["elements"]),
        removed=tuple(key(k) for k in delta["removed"]),
    )


def _history_range(
    found: Mapping[str, Any], schema: TableSchema, types: Mapping[str, CqlType]
) -> ClusteringRange | None:
    if not found:
        return None

    def bound(b: Mapping[str, Any]) -> ClusteringBound:
        values = {n: from_json(types[n], v) for n, v in b["values"].items()}
        return ClusteringBound(values, b["inclusive"])

    descending = tuple(
        c.name for c in schema.clustering if c.clustering_order is ClusteringOrder.DESC
    )
    return ClusteringRange(bound(found["start"]), bound(found["end"]), descending)
