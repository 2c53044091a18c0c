"""Schema changes on the PostgreSQL mirror: each applied twice (DDL is idempotent)."""

from __future__ import annotations

import attrs
import pytest

from cdc_domain.errors import SchemaIncompatibleError
from cdc_domain.events import Operation
from cdc_domain.schema import ColumnKind
from cdc_domain.schema_changes import SchemaDiff
from tests.factories import column
from tests.integration.postgres.mirror_model import ITEMS, QUALIFIED, batch_of, ev, reference


def evolve(schema, *, add=(), drop=(), retype=None):
    columns = [c for c in schema.columns if c.name not in drop]
    if retype:
        columns = [attrs.evolve(c, type=retype[1]) if c.name == retype[0] else c for c in columns]
    return attrs.evolve(schema, columns=(*columns, *add))


async def columns_of(sink, table="items"):
    pool = await sink._pool.get()
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = $2",
            sink._naming.schema_for("sem", table),
            table,
        )
    return {r["column_name"]: r["data_type"] for r in rows}


async def apply(sink, old, new):
    for change in SchemaDiff().tables(old, new):
        await sink.apply_schema_change(change)
        await sink.apply_schema_change(change)


async def test_add_columns_regular_and_static(make_pg_sink):
    sink, _ = await make_pg_sink(QUALIFIED)
    first = ev(Operation.INSERT, 1, (1, "x"), 5, columns={"a": "x"})
    await sink.write(batch_of([first]))
    wider = evolve(ITEMS, add=(column("note", "text"), column("s2", "int", ColumnKind.STATIC)))
    await apply(sink, ITEMS, wider)
    later = [
        ev(Operation.UPDATE, 1, (1, "x"), 6, columns={"note": "hi"}),
        ev(Operation.UPDATE, 1, None, 6, columns={"s2": 2}, static=True),
    ]
    await sink.write(batch_of(later, wider))
    assert await sink.rows(QUALIFIED) == reference([first, *later])
    await sink.aclose()


@pytest.mark.parametrize("policy", ["keep", "drop"])
async def test_dropped_columns_are_kept_by_default_or_dropped(make_pg_sink, policy):
    sink, _ = await make_pg_sink(QUALIFIED, drop_columns=policy)
    await sink.write(batch_of([ev(Operation.INSERT, 1, (1, "x"), 5, columns={"a": "x", "b": 1})]))
    narrower = evolve(ITEMS, drop=("b",))
    await apply(sink, ITEMS, narrower)
    assert ("b" in await columns_of(sink)) is (policy == "keep")
    await sink.write(batch_of([ev(Operation.UPDATE, 1, (1, "x"), 6, columns={"a": "y"})], narrower))
    assert await sink.rows(QUALIFIED) == {((1,), (1, "x")): {"a": "y"}}
    await sink.aclose()


async def test_a_widening_alters_the_column_in_place(make_pg_sink):
    sink, _ = await make_pg_sink(QUALIFIED)
    await sink.write(batch_of([ev(Operation.INSERT, 1, (1, "x"), 5, columns={"b": 7})]))
    wider = evolve(ITEMS, retype=("b", column("b", "bigint").type))
    await apply(sink, ITEMS, wider)
    assert (await columns_of(sink))["b"] == "bigint"
    big = ev(Operation.UPDATE, 1, (1, "x"), 6, columns={"b": 2**40})
    await sink.write(batch_of([big], wider))
    assert (await sink.rows(QUALIFIED))[((1,), (1, "x"))]["b"] == 2**40
    await sink.aclose()


async def test_a_narrowing_is_refused_with_the_table_named(make_pg_sink):
    sink, _ = await make_pg_sink(QUALIFIED)
    narrower = evolve(ITEMS, retype=("b", column("b", "smallint").type))
    (change,) = SchemaDiff().tables(ITEMS, narrower)
    with pytest.raises(SchemaIncompatibleError) as raised:
        await sink.apply_schema_change(change)
    assert raised.value.table == QUALIFIED
    await sink.aclose()
