"""Hypothesis strategies for column values and domain models."""

from __future__ import annotations

import datetime as dt
import ipaddress

from hypothesis import strategies as st

from cdc_domain.cql_types import NATIVE_TYPES, CqlType
from cdc_domain.dead_letters import DeadLetterEvent, DeadLetterStatus, FailureReason
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
from cdc_domain.offsets import Checkpoint, OffsetRecord
from cdc_domain.schema import ClusteringOrder, ColumnDefinition, ColumnKind, TableSchema
from cdc_domain.values import Duration, UdtValue

names = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
aware_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive by design
    max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.just(float("inf")),
    st.text(),
    st.binary(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    aware_datetimes,
    st.dates(),
    st.times(),
    st.ip_addresses().map(lambda a: ipaddress.ip_address(str(a))),
    st.builds(Duration, st.integers(), st.integers(), st.integers()),
)
hashable = st.one_of(st.integers(), st.text(), st.uuids(), st.dates(), st.binary())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.frozensets(hashable, max_size=3),
        st.dictionaries(st.text(), inner, max_size=3),
        st.dictionaries(hashable, inner, max_size=3),
        st.lists(st.tuples(names, inner), max_size=3).map(lambda f: UdtValue(tuple(f))),
    ),
    max_leaves=8,
)
columns = st.dictionaries(names, values, max_size=4)
positions = st.builds(
    SourcePosition,
    st.integers(-1, 2**62),
    st.integers(0, 2**31),
    st.integers(0, 1000),
    st.none() | names,
)
elements = st.builds(
    CollectionElement, hashable, values, st.integers(), st.none() | st.integers(1, 10**6)
)
deltas = st.builds(
    CollectionDelta,
    st.sampled_from(["list", "set", "map", "udt"]),
    st.booleans(),
    st.tuples(elements),
    st.lists(hashable, max_size=2).map(tuple),
    st.none() | st.integers(),
)
bounds = st.builds(ClusteringBound, columns, st.booleans())


@st.composite
def change_events(draw: st.DrawFn) -> ChangeEvent:
    operation = draw(st.sampled_from(Operation))
    scope = draw(st.sampled_from(DeletionScope)) if operation is Operation.DELETE else None
    deleted = tuple(draw(st.lists(names, min_size=1, max_size=2)))
    return ChangeEvent.create(
        operation=operation,
        keyspace=draw(names),
        table=draw(names),
        partition_key=draw(st.dictionaries(names, values, min_size=1, max_size=2)),
        clustering_key=draw(columns),
        columns=draw(columns),
        deleted_columns=deleted if scope is DeletionScope.CELL else (),
        collections=draw(st.dictionaries(names, deltas, max_size=2)),
        counters=draw(st.dictionaries(names, st.integers(), max_size=2)),
        counter_totals=draw(st.dictionaries(names, st.integers(), max_size=2)),
        scope=scope,
        clustering_range=draw(st.builds(ClusteringRange, bounds, bounds))
        if scope is DeletionScope.RANGE
        else None,
        static=draw(st.booleans()),
        timestamp_micros=draw(st.integers(-(2**62), 2**62)),
        ttl_seconds=draw(st.none() | st.integers(1, 630720000)),
        captured_at=draw(aware_datetimes),
        position=draw(positions),
    )


cql_types = st.recursive(
    st.sampled_from(sorted(NATIVE_TYPES)).map(CqlType),
    lambda inner: st.one_of(
        st.builds(lambda t, f: CqlType("list", (t,), frozen=f), inner, st.booleans()),
        st.builds(lambda t, f: CqlType("set", (t,), frozen=f), inner, st.booleans()),
        st.builds(lambda k, v: CqlType("map", (k, v)), inner, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda ps: CqlType("tuple", tuple(ps), True)),
        st.builds(
            lambda t, n: CqlType("vector", (t,), True, dimension=n), inner, st.integers(1, 8)
        ),
        st.lists(st.tuples(names, inner), min_size=1, max_size=3, unique_by=lambda p: p[0]).map(
            lambda fs: CqlType(
                "udt",
                tuple(t for _, t in fs),
                udt_name="addr",
                udt_keyspace="ks",
                field_names=tuple(n for n, _ in fs),
            )
        ),
    ),
    max_leaves=5,
)
column_definitions = st.builds(
    ColumnDefinition,
    names,
    cql_types,
    st.sampled_from(ColumnKind),
    st.integers(-1, 5),
    st.sampled_from(ClusteringOrder),
)
table_schemas = st.builds(
    TableSchema,
    names,
    names,
    st.uuids(),
    st.lists(column_definitions, max_size=4).map(tuple),
    st.booleans(),
    st.lists(column_definitions, max_size=2).map(tuple),
)
dead_letters = st.builds(
    DeadLetterEvent,
    st.text(min_size=1),
    st.sampled_from(FailureReason),
    st.text(),
    aware_datetimes,
    st.none() | change_events(),
    st.none() | names,
    st.dictionaries(names, values, max_size=2),
    st.none() | st.binary(),
    st.none() | positions,
    st.integers(0, 10),
    st.sampled_from(DeadLetterStatus),
)
checkpoints = st.builds(Checkpoint, names, positions, st.integers(0, 10**6))
offset_records = st.builds(
    OffsetRecord, names, names, positions, st.integers(0, 10**9), aware_datetimes
)
