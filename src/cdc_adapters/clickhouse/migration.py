"""Converting a table written by the previous design (ADR 0006) into this one (ADR 0010).

The old mirror kept, in every row, the cell-level state that produced it (``_cdc_state``:
each cell's write timestamp and value, the row's marker and tombstone, each collection
element with its timestamp), and a companion ``<table>__cdc_partitions`` with partition
and range tombstones and static cells. That state is exactly what events say, so the
conversion turns each state back into the events that imply it and writes them through
the new layout, which merges them like any other events: converting while agents
already write the new layout is safe (the merge does not care who wrote first), and so
is converting twice. The old state has no expiry times (the old design ignored TTLs),
so converted cells do not expire.

The old table is renamed ``<table>__cdc_pre0010`` (and its companion
``<table>__cdc_partitions_pre0010``) and left for the operator to drop once satisfied;
its ``<table>__current`` view is dropped.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from cdc_adapters.clickhouse.client import ClickHouseClient
from cdc_adapters.clickhouse.sql import qualified, quote_string
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
from cdc_domain.schema import TableSchema
from cdc_domain.values import value_from_json

__all__ = ["OldLayout", "old_events", "old_layout"]

_NEVER = -(2**63)
_RENAMED = "__cdc_pre0010"
_CAPTURED = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class OldLayout:
    """The old objects of one table, found in ``database``."""

    def __init__(self, database: str, schema: TableSchema, *, renamed: bool) -> None:
        self.database = database
        self.schema = schema
        self.renamed = renamed
        name = schema.table
        self.rows = f"{name}{_RENAMED}" if renamed else name
        self.partitions = f"{name}__cdc_partitions" + (_RENAMED if renamed else "")

    async def set_aside(self, client: ClickHouseClient) -> None:
        """Rename the old tables out of the new layout's way, drop the old view."""
        name, database = self.schema.table, self.database
        await client.execute(f"DROP TABLE IF EXISTS {qualified(database, name + '__current')}")
        renames = [f"{qualified(database, name)} TO {qualified(database, name + _RENAMED)}"]
        if await _exists(client, database, f"{name}__cdc_partitions"):
            old = f"{name}__cdc_partitions"
            renames.append(f"{qualified(database, old)} TO {qualified(database, old + _RENAMED)}")
        await client.execute(f"RENAME TABLE {', '.join(renames)}")
        self.rows = f"{name}{_RENAMED}"
        self.partitions = f"{name}__cdc_partitions{_RENAMED}"
        self.renamed = True

    async def states(self, client: ClickHouseClient) -> AsyncIterator[tuple[bool, Any]]:
        """Every current state: (is it a partition's, its parsed JSON), streamed."""
        async for text in client.select_lines(
            f"SELECT `_cdc_state` FROM {qualified(self.database, self.rows)} FINAL"
        ):
            yield False, json.loads(text)
        if await _exists(client, self.database, self.partitions):
            async for text in client.select_lines(
                f"SELECT `_cdc_state` FROM {qualified(self.database, self.partitions)} FINAL"
            ):
                yield True, json.loads(text)


async def old_layout(
    client: ClickHouseClient, database: str, schema: TableSchema
) -> OldLayout | None:
    """The table's old objects: under its own name (not yet converted) or set aside by
    a conversion that did not finish; None when there are none."""
    name = schema.table
    for table, renamed in ((name, False), (name + _RENAMED, True)):
        columns = await client.select(
            "SELECT name FROM system.columns WHERE database = "
            f"{quote_string(database)} AND table = {quote_string(table)} "
            "AND name = '_cdc_state'"
        )
        if columns:
            return OldLayout(database, schema, renamed=renamed)
    return None


def old_events(schema: TableSchema, partition: bool, state: Any) -> Iterator[ChangeEvent]:
    """The events that imply one old state: its marker, tombstones, cells, elements."""
    pk_names = [c.name for c in schema.partition_key]
    ck_names = [c.name for c in schema.clustering]
    if partition:
        pk = dict(zip(pk_names, (value_from_json(v) for v in state["k"]), strict=True))
        yield from _partition_events(schema, pk, state["p"])
        return
    pk_json, ck_json = state["k"]
    pk = dict(zip(pk_names, (value_from_json(v) for v in pk_json), strict=True))
    ck = dict(zip(ck_names, (value_from_json(v) for v in ck_json), strict=True))
    yield from _row_events(schema, pk, ck, state["r"], static=False)


def _event(schema: TableSchema, operation: Operation, ts: int, **kwargs: Any) -> ChangeEvent:
    return ChangeEvent.create(
        operation=operation,
        keyspace=schema.keyspace,
        table=schema.table,
        timestamp_micros=ts,
        captured_at=_CAPTURED,
        position=SourcePosition(-1, 0, snapshot="pre0010"),
        **kwargs,
    )


def _row_events(
    schema: TableSchema, pk: dict[str, Any], ck: dict[str, Any], row: Any, *, static: bool
) -> Iterator[ChangeEvent]:
    keys: dict[str, Any] = {"partition_key": pk, "static": static}
    if not static:
        keys["clustering_key"] = ck
    if row["l"] > _NEVER and not static:
        yield _event(schema, Operation.INSERT, row["l"], **keys)
    if row["d"] > _NEVER and not static:
        yield _event(schema, Operation.DELETE, row["d"], scope=DeletionScope.ROW, **keys)
    for name, (ts, deleted, value) in row["s"].items():
        if deleted:
            yield _event(
                schema, Operation.DELETE, ts, scope=DeletionScope.CELL,
                deleted_columns=(name,), **keys,
            )  # fmt: skip
        else:
            yield _event(
                schema, Operation.UPDATE, ts, columns={name: value_from_json(value)}, **keys
            )
    for name, (kind, cleared, elements) in row["x"].items():
        if cleared > _NEVER:
            # An overwrite at t deletes what is older than t - 1: the state's deletion time.
            delta = CollectionDelta(kind, overwritten=True)
            yield _event(schema, Operation.UPDATE, cleared + 1, collections={name: delta}, **keys)
        for key_json, ts, deleted, value in elements:
            key = _hashable(value_from_json(key_json))
            if deleted:
                delta = CollectionDelta(kind, removed=(key,), removed_timestamp_micros=ts)
            else:
                element = CollectionElement(key, value_from_json(value), ts)
                delta = CollectionDelta(kind, elements=(element,))
            yield _event(schema, Operation.UPDATE, ts, collections={name: delta}, **keys)


def _partition_events(
    schema: TableSchema, pk: dict[str, Any], partition: Any
) -> Iterator[ChangeEvent]:
    if partition["d"] > _NEVER:
        yield _event(
            schema, Operation.DELETE, partition["d"], partition_key=pk,
            scope=DeletionScope.PARTITION,
        )  # fmt: skip
    for (start, end), ts in partition["r"]:
        rng = ClusteringRange(_bound(start), _bound(end))
        yield _event(
            schema, Operation.DELETE, ts, partition_key=pk, scope=DeletionScope.RANGE,
            clustering_range=rng,
        )  # fmt: skip
    yield from _row_events(schema, pk, {}, partition["st"], static=True)


def _bound(data: Any) -> ClusteringBound:
    values, inclusive = data
    return ClusteringBound({k: value_from_json(v) for k, v in values.items()}, inclusive)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


async def _exists(client: ClickHouseClient, database: str, table: str) -> bool:
    rows = await client.select(
        "SELECT count() FROM system.tables WHERE database = "
        f"{quote_string(database)} AND name = {quote_string(table)}"
    )
    return rows == [["1"]]
