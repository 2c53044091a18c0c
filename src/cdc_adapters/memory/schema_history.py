from __future__ import annotations

import builtins
import datetime as dt

from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import AppliedChange, ChangeKind, SchemaChange


class MemorySchemaHistory:
    def __init__(self) -> None:
        self._changes: list[AppliedChange] = []

    async def applied(self, destination: str) -> dict[str, TableSchema]:
        return latest_schemas(self._changes, destination)

    async def record(self, destination: str, change: SchemaChange, applied_at: dt.datetime) -> None:
        self._changes.append(AppliedChange(destination, change, applied_at))

    async def changes(self, destination: str | None = None) -> builtins.list[AppliedChange]:
        return [c for c in self._changes if destination is None or c.destination == destination]

    async def aclose(self) -> None:
        return None


def latest_schemas(changes: list[AppliedChange], destination: str) -> dict[str, TableSchema]:
    """Fold a destination's history into the schema it holds per table."""
    schemas: dict[str, TableSchema] = {}
    for applied in changes:
        if applied.destination != destination:
            continue
        change = applied.change
        if change.kind is ChangeKind.DROP_TABLE:
            schemas.pop(change.qualified_table, None)
        else:
            schemas[change.qualified_table] = change.schema
    return schemas
