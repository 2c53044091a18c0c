from __future__ import annotations

from collections.abc import Iterable, Mapping

from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import SchemaChange, SchemaDiff


class MemorySchemaSource:
    """Schemas set by the test; ``refresh`` diffs what was set since the last refresh."""

    def __init__(self, schemas: Iterable[TableSchema] = ()) -> None:
        self._current: dict[tuple[str, str], TableSchema] = {}
        for schema in schemas:
            self.put(schema)
        self._seen = dict(self._current)
        self._diff = SchemaDiff()

    def put(self, schema: TableSchema) -> None:
        self._current[(schema.keyspace, schema.table)] = schema

    def drop(self, keyspace: str, table: str) -> None:
        self._current.pop((keyspace, table), None)

    async def table(self, keyspace: str, table: str) -> TableSchema | None:
        return self._current.get((keyspace, table))

    async def tables(self) -> Mapping[tuple[str, str], TableSchema]:
        return dict(self._current)

    async def refresh(self) -> list[SchemaChange]:
        changes = self._diff.keyspaces(self._seen, self._current)
        self._seen = dict(self._current)
        return changes

    async def aclose(self) -> None:
        return None
