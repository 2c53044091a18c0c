"""Two agents writing one table while their schemas differ: one is further along its
commit log and has already applied an ``ALTER TABLE`` the other has not yet read. The
agent ahead adds the column to the ingest table and a materialized view reading it, and
under ``drop_columns: drop`` drops a column; the agent behind still inserts lines of the
older shape. Both go on writing, nothing is refused, and the mirror holds both agents'
cells (the three-node cluster suite found this: the agent behind had its table paused
and its events dead-lettered)."""

from __future__ import annotations

import attrs

from cdc_domain.destinations import DroppedColumns
from cdc_domain.events import Operation
from cdc_domain.schema_changes import SchemaDiff
from tests.contract.sink_contract import batch_of, on
from tests.factories import column, table

OLDER = table(
    "accounts",
    keyspace="schemas",
    partition={"id": "int"},
    regular={"name": "text", "note": "text"},
)
WIDER = attrs.evolve(OLDER, columns=(*OLDER.columns, column("loyalty", "int")))
NARROWER = attrs.evolve(
    OLDER,
    columns=tuple(c for c in OLDER.columns if c.name != "note"),
    dropped_columns=tuple(c for c in OLDER.columns if c.name == "note"),
)


async def test_an_agent_behind_writes_beside_one_that_added_a_column(make_sink):
    ahead, read_back = await make_sink()
    behind, _ = await make_sink(database_prefix=ahead.database_for(""))
    await behind.write(batch_of([on(OLDER, Operation.INSERT, 1, 10, columns={"name": "a"})], OLDER))
    wider = [on(WIDER, Operation.INSERT, 2, 10, columns={"name": "b", "loyalty": 5})]
    await ahead.write(batch_of(wider, WIDER))

    older = [
        on(OLDER, Operation.UPDATE, 1, 20, columns={"note": "n"}),
        on(OLDER, Operation.UPDATE, 2, 20, columns={"name": "c"}),
    ]
    await behind.write(batch_of(older, OLDER))
    await behind.write(batch_of([on(OLDER, Operation.UPDATE, 3, 30, columns={"name": "d"})], OLDER))
    await ahead.write(batch_of([on(WIDER, Operation.UPDATE, 3, 40, columns={"loyalty": 7})], WIDER))

    assert await read_back(WIDER) == {
        ((1,), ()): {"name": "a", "note": "n"},
        ((2,), ()): {"name": "c", "loyalty": 5},
        ((3,), ()): {"name": "d", "loyalty": 7},
    }


async def test_an_agent_behind_writes_after_one_dropped_a_column(make_sink):
    ahead, read_back = await make_sink(drop_columns=DroppedColumns.DROP)
    behind, _ = await make_sink(
        database_prefix=ahead.database_for(""), drop_columns=DroppedColumns.DROP
    )
    first = [on(OLDER, Operation.INSERT, 1, 10, columns={"name": "a", "note": "x"})]
    await behind.write(batch_of(first, OLDER))
    (drop,) = SchemaDiff().tables(OLDER, NARROWER)
    await ahead.apply_schema_change(drop)

    older = [on(OLDER, Operation.UPDATE, 1, 20, columns={"name": "b", "note": "y"})]
    await behind.write(batch_of(older, OLDER))

    assert await read_back(NARROWER) == {((1,), ()): {"name": "b"}}
