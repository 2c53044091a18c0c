"""The SchemaHistory contract. Subclasses provide ``schema_history`` (fresh, empty) and
``reopen`` (a new history over the same storage, or the same one)."""

from __future__ import annotations

import datetime as dt

import attrs

from cdc_domain.ports import SchemaHistory
from cdc_domain.schema_changes import SchemaDiff
from tests.factories import column, table

AT = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
ORDERS = table("orders")
WIDER = attrs.evolve(ORDERS, columns=(*ORDERS.columns, column("note", "text")))


class SchemaHistoryContract:
    async def test_is_a_schema_history(self, schema_history):
        assert isinstance(schema_history, SchemaHistory)

    async def test_empty_history_holds_nothing(self, schema_history):
        assert await schema_history.applied("pg") == {}
        assert await schema_history.changes() == []

    async def test_applied_is_the_latest_schema_per_table(self, schema_history):
        diff = SchemaDiff()
        await schema_history.record("pg", diff.created(ORDERS), AT)
        (add,) = diff.tables(ORDERS, WIDER)
        await schema_history.record("pg", add, AT)
        applied = await schema_history.applied("pg")
        assert applied == {"shop.orders": WIDER}
        assert applied["shop.orders"].version == WIDER.version

    async def test_destinations_are_independent(self, schema_history):
        await schema_history.record("pg", SchemaDiff().created(ORDERS), AT)
        assert await schema_history.applied("ch") == {}
        assert [c.destination for c in await schema_history.changes("pg")] == ["pg"]

    async def test_a_dropped_table_is_no_longer_held(self, schema_history):
        created = SchemaDiff().created(ORDERS)
        (dropped,) = SchemaDiff().keyspaces({("shop", "orders"): ORDERS}, {})
        await schema_history.record("pg", created, AT)
        await schema_history.record("pg", dropped, AT)
        assert await schema_history.applied("pg") == {}
        assert len(await schema_history.changes("pg")) == 2

    async def test_history_survives_a_reopen(self, schema_history, reopen):
        await schema_history.record("pg", SchemaDiff().created(ORDERS), AT)
        await schema_history.aclose()
        again = await reopen()
        (entry,) = await again.changes()
        assert (entry.destination, entry.change.table, entry.applied_at) == ("pg", "orders", AT)
