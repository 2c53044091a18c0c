"""The SchemaSource contract. Subclasses provide ``schema_source`` and ``define``, an
async function ``define(keyspace, table, columns_cql)`` that creates or replaces a
table in the underlying system (``columns_cql`` like ``"id int PRIMARY KEY, v text"``),
and ``keyspace`` (a fresh keyspace name)."""

from __future__ import annotations

from cdc_domain.ports import SchemaSource
from cdc_domain.schema import ColumnKind
from cdc_domain.schema_changes import ChangeKind


class SchemaSourceContract:
    async def test_is_a_schema_source(self, schema_source):
        assert isinstance(schema_source, SchemaSource)

    async def test_a_defined_table_is_found_with_its_columns(self, schema_source, define, keyspace):
        await define(keyspace, "orders", "id int, day int, total int, PRIMARY KEY (id, day)")
        await schema_source.refresh()
        schema = await schema_source.table(keyspace, "orders")
        assert schema is not None
        assert [c.name for c in schema.partition_key] == ["id"]
        assert [c.name for c in schema.clustering] == ["day"]
        assert schema.column("total").kind is ColumnKind.REGULAR
        assert (keyspace, "orders") in await schema_source.tables()

    async def test_a_table_defined_before_the_first_question_needs_no_refresh(
        self, schema_source, define, keyspace
    ):
        await define(keyspace, "early", "id int PRIMARY KEY, v text")
        schema = await schema_source.table(keyspace, "early")
        assert schema is not None
        assert (keyspace, "early") in await schema_source.tables()

    async def test_an_unknown_table_is_none(self, schema_source, keyspace):
        assert await schema_source.table(keyspace, "nope") is None

    async def test_refresh_reports_changes_once(self, schema_source, define, keyspace):
        await schema_source.refresh()
        await define(keyspace, "items", "id int PRIMARY KEY, v text")
        changes = await schema_source.refresh()
        created = [c for c in changes if c.table == "items"]
        assert [c.kind for c in created] == [ChangeKind.CREATE_TABLE]
        assert [c for c in await schema_source.refresh() if c.table == "items"] == []
        await define(keyspace, "items", "id int PRIMARY KEY, v text, extra bigint")
        added = [c for c in await schema_source.refresh() if c.table == "items"]
        assert [(c.kind, c.column) for c in added] == [(ChangeKind.ADD_COLUMN, "extra")]
