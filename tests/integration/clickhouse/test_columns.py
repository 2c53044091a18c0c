"""The sink reads its tables' columns back as it created them, for every type the mapper
can produce, on both servers: a column it does not recognise would be added again, and
the server refuses that for ever (servers before 20.1 list an ``Array(Tuple(...))``
column as Nested sub-columns, which is why no column of the sink's is one there)."""

from __future__ import annotations

from cdc_domain.events import Operation
from tests.contract.sink_contract import EDGES, FAMILIES, batch_of, on
from tests.factories import table

NATIVE = (
    "ascii text blob boolean tinyint smallint int bigint varint decimal float double uuid "
    "timeuuid timestamp date time duration inet"
)
EVERY_TYPE = table(
    "every_type",
    keyspace="contract",
    regular={
        **{f"c_{name}": name for name in NATIVE.split()},
        "c_flist": "frozen<list<int>>",
        "c_fset": "frozen<set<text>>",
        "c_fmap": "frozen<map<text, int>>",
        "c_tuple": "tuple<int, text>",
        "c_list": "list<text>",
        "c_set": "set<int>",
        "c_map": "map<int, text>",
        "c_vector": "vector<float, 2>",
        "c_udt": "frozen<address>",
    },
)


async def test_every_created_column_is_recognised(make_sink):
    sink, _ = await make_sink()
    for schema in (EVERY_TYPE, FAMILIES, EDGES):
        await sink.write(batch_of([_insert(schema, 1)], schema))
        layout, _ = await sink._layout(schema)
        tables = {"ingest": layout.ingest_columns(), **layout.target_columns()}
        names = {"ingest": f"{layout.name}__cdc_ingest", **layout.table_names()}
        for role, wanted in tables.items():
            listed = await sink._objects.columns(layout.database, names[role])
            assert set(wanted) <= set(listed), (schema.table, role)
        # Written again by a sink that knows nothing of the table: nothing is added again.
        again, _ = await make_sink(database_prefix=sink.database_for(""))
        await again.write(batch_of([_insert(schema, 2)], schema))


def _insert(schema, ts):
    if schema is EDGES:
        return on(schema, Operation.INSERT, "k", ts, clustering_key={"ck": "c"})
    return on(schema, Operation.INSERT, 1, ts)
