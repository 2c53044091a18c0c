"""Bringing a destination's tables up to the schema its next events were decoded with.

Changes travel with the data: before a destination receives a batch, every table in it
is compared with the schema that destination last took, and the difference is applied
first. So no event written under a new schema reaches a destination that lacks it, and
a change missed while the pipeline was down is still applied when its events arrive.

A table whose change the destination cannot take is blocked there alone: the diff
engine's verdict (an incompatible type change) waits for an operator's ``schema
accept``; a DDL statement the destination refuses (a permanent error) pauses the table
until ``retry_after_s`` has passed or the pipeline restarts. Its events are
dead-lettered meanwhile and every other table keeps flowing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import attrs

from cdc_domain.dead_letters import FailureReason
from cdc_domain.errors import FailureClass, SchemaIncompatibleError, classify, describe_error
from cdc_domain.ports import SchemaHistory, Sink
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import SchemaChange, SchemaDiff

__all__ = ["NEVER", "BlockedTable", "SchemaEvolution", "paused_until"]

NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)
"""The ``retry_at`` of a table paused until the next start."""


def paused_until(now: dt.datetime, retry_after_s: float | None) -> dt.datetime:
    return NEVER if retry_after_s is None else now + dt.timedelta(seconds=retry_after_s)


@attrs.frozen(slots=True)
class BlockedTable:
    """A table a destination cannot follow: its events are dead-lettered (as
    ``letters``) until an operator fixes the destination. ``retry_at`` is set for a
    table paused after the destination refused its DDL or its writes: it is tried
    again then (or at the next start)."""

    destination: str
    table: str
    change: str
    reason: str
    details: dict[str, object]
    retry_at: dt.datetime | None = None
    letters: FailureReason = FailureReason.SCHEMA_INCOMPATIBLE

    @property
    def advice(self) -> str:
        if self.retry_at is not None:
            by_itself = (
                ""
                if self.retry_at == NEVER
                else f" (it tries again by itself at {self.retry_at.isoformat(timespec='seconds')})"
            )
            return (
                f"{self.destination} refused {self.change} of {self.table} ({self.reason}): "
                f"{self.table} is paused there and its events go to the dead letter queue, "
                f"the other tables keep flowing. Fix {self.table} in {self.destination}, then "
                f"restart the pipeline{by_itself} and run 'cdc-app dlq replay "
                f"--destination {self.destination} --reason {self.letters.value}'."
            )
        return (
            f"{self.destination} cannot apply {self.change} ({self.reason}). Change "
            f"{self.table} in {self.destination} by hand to hold the new definition, then run "
            f"'cdc-app schema accept --destination {self.destination} --table {self.table}' "
            f"and 'cdc-app dlq replay --destination {self.destination} "
            "--reason SCHEMA_INCOMPATIBLE'."
        )


class SchemaEvolution:
    def __init__(
        self,
        history: SchemaHistory,
        diff: SchemaDiff | None = None,
        *,
        retry_after_s: float | None = 600.0,
    ) -> None:
        self._history = history
        self._diff = diff or SchemaDiff()
        self._applied: dict[str, dict[str, TableSchema]] = {}
        self._retry_after = retry_after_s
        self._refused: dict[tuple[str, str], tuple[str, BlockedTable]] = {}

    async def prepare(
        self, sink: Sink, schemas: Mapping[str, TableSchema], now: dt.datetime
    ) -> tuple[int, dict[str, BlockedTable]]:
        """Apply what each table of the batch needs; return how many changes were
        applied and the tables that stay blocked for this destination."""
        applied = await self._known(sink.name)
        count = 0
        blocked: dict[str, BlockedTable] = {}
        for name, schema in schemas.items():
            paused = self._still_paused(sink.name, schema, now)
            if paused is not None:
                blocked[name] = paused
                continue
            changes = self._changes(applied.get(name), schema)
            refused = self._first_incompatible(sink, changes)
            if refused is not None:
                # An operator may have accepted the schema from another process since.
                applied = await self._reload(sink.name)
                changes = self._changes(applied.get(name), schema)
                refused = self._first_incompatible(sink, changes)
            if refused is not None:
                blocked[name] = refused
                continue
            try:
                for change in changes:
                    await sink.apply_schema_change(change)
                    await self._history.record(sink.name, change, now)
                    count += 1
            except SchemaIncompatibleError as exc:
                blocked[name] = BlockedTable(sink.name, name, str(exc), str(exc), exc.details)
                continue
            except Exception as exc:
                if classify(exc) is FailureClass.TRANSIENT:
                    raise
                blocked[name] = self._pause(sink.name, schema, exc, now)
                continue
            if changes:
                applied[name] = schema
        return count, blocked

    def paused(self, destination: str, now: dt.datetime) -> dict[str, BlockedTable]:
        """Every table paused for ``destination`` whose pause still lasts, by name."""
        return {
            table: blocked
            for (name, table), (_, blocked) in self._refused.items()
            if name == destination and (blocked.retry_at is None or now < blocked.retry_at)
        }

    def _still_paused(
        self, destination: str, schema: TableSchema, now: dt.datetime
    ) -> BlockedTable | None:
        """The table's pause, while it lasts for the schema version it failed on."""
        key = (destination, schema.qualified_name)
        found = self._refused.get(key)
        if found is None:
            return None
        version, table = found
        if version != schema.version or (table.retry_at is not None and now >= table.retry_at):
            del self._refused[key]
            return None
        return table

    def _pause(
        self, destination: str, schema: TableSchema, exc: Exception, now: dt.datetime
    ) -> BlockedTable:
        retry_at = paused_until(now, self._retry_after)
        table = BlockedTable(
            destination,
            schema.qualified_name,
            "its schema change",
            describe_error(exc),
            {"error": describe_error(exc)},
            retry_at=retry_at,
        )
        self._refused[(destination, schema.qualified_name)] = (schema.version, table)
        return table

    async def accept(self, sink_name: str, schema: TableSchema, now: dt.datetime) -> SchemaChange:
        """Record ``schema`` as what the destination holds, after an operator made it so."""
        change = self._diff.created(schema)
        await self._history.record(sink_name, change, now)
        self._applied.pop(sink_name, None)
        return change

    async def _known(self, destination: str) -> dict[str, TableSchema]:
        known = self._applied.get(destination)
        if known is None:
            known = dict(await self._history.applied(destination))
            self._applied[destination] = known
        return known

    async def _reload(self, destination: str) -> dict[str, TableSchema]:
        self._applied.pop(destination, None)
        return await self._known(destination)

    def _changes(self, known: TableSchema | None, schema: TableSchema) -> list[SchemaChange]:
        if known is None or known.table_id != schema.table_id:
            return [self._diff.created(schema)]
        if known.version == schema.version:
            return []
        return self._diff.tables(known, schema)

    @staticmethod
    def _first_incompatible(sink: Sink, changes: list[SchemaChange]) -> BlockedTable | None:
        for change in changes:
            if not change.is_compatible_with(sink.kind):
                verdict = change.compatibility[sink.kind]
                return BlockedTable(
                    destination=sink.name,
                    table=change.qualified_table,
                    change=change.describe(),
                    reason=verdict.reason,
                    details={
                        "change": change.describe(),
                        "column": change.column,
                        "old_type": change.old_type.cql() if change.old_type else None,
                        "new_type": change.new_type.cql() if change.new_type else None,
                        "reason": verdict.reason,
                    },
                )
        return None
