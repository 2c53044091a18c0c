"""Every table schema the commit log may need, by table id, with the versions seen.

The commit log names a table by id and serializes each cell against the columns the
table had when the mutation was written. A reader that lags behind DDL therefore needs
more than the current schema:

* after ``ALTER TABLE ... ADD`` the mutation names a column the catalog does not know yet:
  the caller refreshes and decodes again;
* after ``ALTER TABLE ... DROP`` older mutations still hold cells of the dropped column;
  ``system_schema.dropped_columns`` gives its type, and :meth:`SchemaCatalog.written_under`
  gives the version of the table that still had the column;
* after ``DROP TABLE`` the table's last schema stays known, so what was written before the
  drop still decodes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable

import attrs

from cdc_domain.schema import ColumnDefinition, ColumnKind, TableSchema

__all__ = ["SYSTEM_KEYSPACES", "SchemaCatalog", "SchemaLoader", "VersionProbe"]

SchemaLoader = Callable[[], Iterable[TableSchema]]
VersionProbe = Callable[[], object]
"""The node's schema version, which changes with every DDL it applied (blocking)."""

SYSTEM_KEYSPACES = frozenset(
    {
        "system",
        "system_auth",
        "system_distributed",
        "system_schema",
        "system_traces",
        "system_views",
        "system_virtual_schema",
        "system_cluster_metadata",
    }
)


class SchemaCatalog:
    """Schemas by table id, refreshed through ``load``; ``history`` versions kept per table.

    ``loaded`` says whether ``load`` ran at least once (a fixed catalog never loads).
    One per agent: the change source decodes with it, and the schema source, the use case
    and dead letter replay read it, so all of them see a DDL at the same moment.
    Thread-safe: the change source decodes in a worker thread while the event loop may
    ask for tables.
    """

    def __init__(
        self,
        load: SchemaLoader | None = None,
        schemas: Iterable[TableSchema] = (),
        *,
        version: VersionProbe | None = None,
        refresh_every_s: float = 60.0,
        history: int = 16,
    ) -> None:
        self._load = load
        self._version = version
        self._seen_version: object = None
        self._refresh_every = refresh_every_s
        self._history = history
        self._lock = threading.Lock()
        self._current: dict[uuid.UUID, TableSchema] = {}
        self._dropped_tables: dict[uuid.UUID, TableSchema] = {}
        self._versions: dict[uuid.UUID, list[TableSchema]] = {}
        self.generation = 0
        self.refreshed_at: float | None = None
        self.loaded = False
        self.replace(schemas)

    @property
    def refreshable(self) -> bool:
        return self._load is not None

    def lookup(self, table_id: uuid.UUID) -> TableSchema | None:
        """The table's current schema (its last one, if it was dropped)."""
        found = self._current.get(table_id)
        return found if found is not None else self._dropped_tables.get(table_id)

    def current(self) -> dict[uuid.UUID, TableSchema]:
        """The tables that exist now, by id."""
        with self._lock:
            return dict(self._current)

    def refresh(self) -> bool:
        """Load the schemas again; True when anything changed. Blocking."""
        if self._load is None:
            return False
        loaded = list(self._load())
        self.loaded = True
        return self.replace(loaded)

    def watch(self) -> None:
        """Refresh when the node's schema changed, and every ``refresh_every_s`` (a
        missed version change costs at most that long). Blocking: one cheap query."""
        if self._version is None:
            return
        version = self._version()
        refreshed_at = self.refreshed_at
        stale = refreshed_at is None or time.monotonic() - refreshed_at > self._refresh_every
        if version != self._seen_version or stale:
            self.refresh()
            self._seen_version = version

    def replace(self, schemas: Iterable[TableSchema]) -> bool:
        new = {s.table_id: s for s in schemas}
        with self._lock:
            self.refreshed_at = time.monotonic()
            if new == self._current:
                return False
            for table_id, schema in self._current.items():
                if table_id not in new:
                    self._dropped_tables[table_id] = schema
            for table_id, schema in new.items():
                self._remember(schema)
                self._dropped_tables.pop(table_id, None)
            self._current = new
            self.generation += 1
            return True

    def _remember(self, schema: TableSchema) -> None:
        versions = self._versions.setdefault(schema.table_id, [])
        if versions and versions[-1].version == schema.version:
            versions[-1] = schema  # same columns: keep the newest flags (cdc, dropped)
            return
        versions.append(schema)
        del versions[: -self._history]

    def written_under(self, schema: TableSchema, columns: Iterable[str]) -> TableSchema:
        """The version of ``schema``'s table a mutation touching ``columns`` was written
        under, for a mutation holding cells of columns ``schema`` lists as dropped.

        The newest version seen that has every one of ``columns``; failing that (the drop
        happened before this process saw the table), ``schema`` with the dropped columns
        put back.
        """
        names = frozenset(columns)
        with self._lock:
            versions = list(self._versions.get(schema.table_id, ()))
        for version in reversed(versions):
            if names <= {c.name for c in version.columns}:
                return version
        restored = tuple(
            attrs.evolve(c, kind=_kind_of_dropped(c))
            for c in schema.dropped_columns
            if c.name in names
        )
        return attrs.evolve(
            schema,
            columns=schema.columns + restored,
            dropped_columns=tuple(c for c in schema.dropped_columns if c.name not in names),
        )


def _kind_of_dropped(column: ColumnDefinition) -> ColumnKind:
    return ColumnKind.STATIC if column.kind is ColumnKind.STATIC else ColumnKind.REGULAR
