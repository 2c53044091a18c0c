"""A richer table than the contract's (clustering, static, collections) and builders
for its events, shared by the PostgreSQL and TimescaleDB mirror tests."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

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
from cdc_domain.mirror import MirrorState
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import SinkBatch
from tests.factories import table

ITEMS = table(
    "items",
    keyspace="sem",
    partition={"id": "int"},
    clustering={"c1": "int", "c2": "text"},
    regular={
        "a": "text",
        "b": "int",
        "tags": "set<text>",
        "attrs": "map<text, int>",
        "log": "list<int>",
    },
    static={"s": "text"},
)
QUALIFIED = ITEMS.qualified_name
CAPTURED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_positions = itertools.count(1)


def ev(
    op: Operation,
    pk: int,
    ck: tuple[int, str] | None,
    ts: int,
    **kwargs: Any,
) -> ChangeEvent:
    if op is Operation.DELETE:
        kwargs.setdefault("scope", DeletionScope.ROW)
    return ChangeEvent.create(
        operation=op,
        keyspace="sem",
        table="items",
        partition_key={"id": pk},
        clustering_key={"c1": ck[0], "c2": ck[1]} if ck else {},
        timestamp_micros=ts,
        captured_at=CAPTURED,
        position=SourcePosition(7, next(_positions)),
        **kwargs,
    )


def range_delete(pk: int, ts: int, start: dict, end: dict, incl=(True, True)) -> ChangeEvent:
    return ev(
        Operation.DELETE,
        pk,
        None,
        ts,
        scope=DeletionScope.RANGE,
        clustering_range=ClusteringRange(
            ClusteringBound(start, incl[0]), ClusteringBound(end, incl[1])
        ),
    )


def elements(ts: int, pairs: dict) -> tuple[CollectionElement, ...]:
    return tuple(CollectionElement(k, v, ts) for k, v in pairs.items())


def set_add(ts: int, *values: str) -> CollectionDelta:
    return CollectionDelta("set", elements=elements(ts, dict.fromkeys(values)))


def set_remove(*values: str) -> CollectionDelta:
    return CollectionDelta("set", removed=values)


def map_put(ts: int, **pairs: int) -> CollectionDelta:
    return CollectionDelta("map", elements=elements(ts, pairs))


def list_append(ts: int, *values: int) -> CollectionDelta:
    cells = {uuid.uuid1(clock_seq=i, node=1): v for i, v in enumerate(values)}
    return CollectionDelta("list", elements=elements(ts, cells))


def batch_of(events, schema=ITEMS) -> SinkBatch:
    end = events[-1].position if events else SourcePosition(7, 0)
    return SinkBatch(
        tuple(events), {schema.qualified_name: schema}, Checkpoint("n1", end, len(events))
    )


def reference(events, name: str = QUALIFIED, now: dt.datetime | None = None) -> dict:
    """The rows ``events`` make, as of ``now`` when given (else ignoring TTLs)."""
    state = MirrorState()
    state.apply_all(events)
    return state.rows(name, now)
