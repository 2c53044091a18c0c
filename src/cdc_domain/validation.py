"""Checks an event against what a destination can hold, before anything is written."""

from __future__ import annotations

from typing import Any

import attrs

from cdc_domain.dead_letters import FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.events import ChangeEvent
from cdc_domain.schema import TableSchema
from cdc_domain.type_mapping import SchemaMapper, Unsupported

__all__ = ["ColumnProblem", "EventValidator", "ValidationResult"]


@attrs.frozen(slots=True)
class ColumnProblem:
    column: str
    cql_type: str
    reason: str


@attrs.frozen(slots=True)
class ValidationResult:
    valid: bool
    reason: FailureReason | None = None
    message: str = ""
    problems: tuple[ColumnProblem, ...] = ()

    @property
    def details(self) -> dict[str, Any]:
        """The column details a dead letter carries, as plain data."""
        return {
            "columns": [
                {"column": p.column, "cql_type": p.cql_type, "reason": p.reason}
                for p in self.problems
            ]
        }


_VALID = ValidationResult(valid=True)


class EventValidator:
    """Validates events per destination kind.

    The verdict for each column depends only on the table's schema version and the
    destination kind, so it is computed once per (version, kind) and cached; the per
    event work is a set lookup.
    """

    def __init__(self, mapper: SchemaMapper | None = None) -> None:
        self._mapper = mapper or SchemaMapper()
        self._cache: dict[tuple[str, str, DestinationKind], dict[str, ColumnProblem]] = {}

    def validate(
        self, event: ChangeEvent, schema: TableSchema, destination: DestinationKind
    ) -> ValidationResult:
        unsupported = self._unsupported(schema, destination)
        problems = []
        for name in event.touched_columns:
            if name in unsupported:
                problems.append(unsupported[name])
            elif schema.column(name) is None:
                problems.append(ColumnProblem(name, "?", "not a column of the table's schema"))
        for name in (*event.partition_key, *event.clustering_key):
            if name in unsupported:
                problems.append(unsupported[name])
        if not problems:
            return _VALID
        message = "; ".join(f"{p.column} ({p.cql_type}): {p.reason}" for p in problems)
        return ValidationResult(
            valid=False,
            reason=FailureReason.SCHEMA_INCOMPATIBLE,
            message=f"{schema.qualified_name} -> {destination.value}: {message}",
            problems=tuple(problems),
        )

    def _unsupported(
        self, schema: TableSchema, destination: DestinationKind
    ) -> dict[str, ColumnProblem]:
        key = (schema.qualified_name, schema.version, destination)
        cached = self._cache.get(key)
        if cached is None:
            cached = {}
            for column in schema.columns:
                mapped = self._mapper.map(column.type, destination)
                if isinstance(mapped, Unsupported):
                    cached[column.name] = ColumnProblem(
                        column.name, column.type.cql(), mapped.reason
                    )
            self._cache[key] = cached
        return cached
