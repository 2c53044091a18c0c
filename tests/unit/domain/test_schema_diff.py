import attrs
import pytest

from cdc_domain.destinations import DestinationKind
from cdc_domain.schema import ColumnKind
from cdc_domain.schema_changes import ChangeKind, SchemaDiff
from tests.factories import column, table

PG, CH, TS = DestinationKind.POSTGRES, DestinationKind.CLICKHOUSE, DestinationKind.TIMESCALEDB
diff = SchemaDiff()


def with_columns(schema, *columns):
    return attrs.evolve(schema, columns=schema.columns + tuple(columns))


def replace_column(schema, name, cql):
    columns = tuple(
        attrs.evolve(c, type=column(name, cql).type) if c.name == name else c
        for c in schema.columns
    )
    return attrs.evolve(schema, columns=columns)


def test_no_change_gives_no_changes():
    assert diff.tables(table(), table()) == []


def test_added_column_is_compatible_where_the_type_maps():
    old = table()
    new = with_columns(old, column("note", "text"))
    (change,) = diff.tables(old, new)
    assert (change.kind, change.column, change.old_type, change.new_type.cql()) == (
        ChangeKind.ADD_COLUMN,
        "note",
        None,
        "text",
    )
    assert all(change.is_compatible_with(d) for d in DestinationKind)
    assert change.schema == new


def test_added_counter_column_is_incompatible_with_mirrors():
    old = table(regular={"hits": "counter"})
    new = with_columns(old, column("misses", "counter"))
    (change,) = diff.tables(old, new)
    assert not change.is_compatible_with(PG)
    assert not change.is_compatible_with(CH)
    assert change.is_compatible_with(TS)
    assert "counter" in change.compatibility[PG].reason


def test_dropped_column_is_compatible_everywhere():
    old = table()
    new = attrs.evolve(old, columns=tuple(c for c in old.columns if c.name != "total"))
    (change,) = diff.tables(old, new)
    assert (change.kind, change.column, change.old_type.cql(), change.new_type) == (
        ChangeKind.DROP_COLUMN,
        "total",
        "int",
        None,
    )
    assert all(change.is_compatible_with(d) for d in DestinationKind)


@pytest.mark.parametrize(
    ("old_type", "new_type", "pg", "ch"),
    [
        ("int", "bigint", True, True),
        ("smallint", "int", True, True),
        ("float", "double", True, True),
        ("int", "varint", True, True),
        ("ascii", "text", True, True),
        ("text", "int", False, False),
        ("bigint", "int", False, False),
        ("int", "text", False, False),
        ("list<int>", "list<bigint>", False, False),
    ],
)
def test_type_changes_are_judged_per_destination(old_type, new_type, pg, ch):
    old = table(regular={"value": old_type})
    (change,) = diff.tables(old, replace_column(old, "value", new_type))
    assert change.kind is ChangeKind.ALTER_TYPE
    assert (change.old_type.cql(), change.new_type.cql()) == (
        column("v", old_type).type.cql(),
        column("v", new_type).type.cql(),
    )
    assert change.is_compatible_with(PG) is pg
    assert change.is_compatible_with(TS) is pg
    assert change.is_compatible_with(CH) is ch
    if not pg:
        assert change.compatibility[PG].reason


def test_any_change_to_a_primary_key_column_is_incompatible():
    old = table(partition={"id": "int"})
    (change,) = diff.tables(old, replace_column(old, "id", "bigint"))
    for destination in (PG, CH, TS):
        assert not change.is_compatible_with(destination)
        assert "primary key" in change.compatibility[destination].reason


def test_kind_change_is_incompatible():
    old = table()
    columns = tuple(
        attrs.evolve(c, kind=ColumnKind.STATIC) if c.name == "status" else c for c in old.columns
    )
    (change,) = diff.tables(old, attrs.evolve(old, columns=columns))
    assert change.kind is ChangeKind.ALTER_TYPE
    assert not change.is_compatible_with(PG)


def test_keyspace_snapshots_give_created_and_dropped_tables():
    orders, users, items = table("orders"), table("users"), table("items")
    old = {("shop", "orders"): orders, ("shop", "users"): users}
    new = {("shop", "orders"): orders, ("shop", "items"): items}
    changes = diff.keyspaces(old, new)
    assert [(c.kind, c.table) for c in changes] == [
        (ChangeKind.CREATE_TABLE, "items"),
        (ChangeKind.DROP_TABLE, "users"),
    ]
    assert changes[0].schema == items
    assert changes[1].schema == users


def test_recreated_table_is_a_drop_and_a_create():
    import uuid

    old_table = table("orders")
    new_table = attrs.evolve(old_table, table_id=uuid.uuid4())
    changes = diff.keyspaces({("shop", "orders"): old_table}, {("shop", "orders"): new_table})
    assert [c.kind for c in changes] == [ChangeKind.DROP_TABLE, ChangeKind.CREATE_TABLE]


def test_created_table_with_an_unsupported_key_type_is_incompatible_there():
    created = table("c", partition={"id": "frozen<map<frozen<list<int>>, int>>"})
    (change,) = diff.keyspaces({}, {("shop", "c"): created})
    assert change.is_compatible_with(PG)
    assert not change.is_compatible_with(CH)


def test_column_changes_inside_keyspace_snapshots():
    old = table()
    new = with_columns(old, column("note", "text"))
    (change,) = diff.keyspaces({("shop", "orders"): old}, {("shop", "orders"): new})
    assert change.kind is ChangeKind.ADD_COLUMN


def test_describe_is_readable():
    old = table(regular={"value": "int"})
    (change,) = diff.tables(old, replace_column(old, "value", "bigint"))
    assert change.describe() == "ALTER_TYPE shop.orders.value (int -> bigint)"
