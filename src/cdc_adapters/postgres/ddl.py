"""DDL for a table layout. Every statement is idempotent, so ensuring a table that is
already there (another writer, a restart, a re-applied schema change) is harmless."""

from __future__ import annotations

from collections.abc import Iterable

from cdc_adapters.postgres.identifiers import qualified, quote
from cdc_adapters.postgres.layout import NEVER, RowTarget, TableLayout

__all__ = ["ensure_statements", "lock_statement", "view_statements"]

_META_COLUMNS = (
    ("_cdc_live_at", "bigint"),
    ("_cdc_deleted_at", f"bigint NOT NULL DEFAULT {NEVER}"),
    ("_cdc_deleted", "boolean NOT NULL DEFAULT false"),
    ("_cdc_writetime", "bigint NOT NULL"),
    ("_cdc_updated_at", "timestamptz NOT NULL DEFAULT now()"),
)


def lock_statement() -> str:
    """Serialises DDL on one table across writers (released at commit)."""
    return "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


def _columns(target: RowTarget) -> list[tuple[str, str]]:
    columns = [(c.name, c.sql_type) for c in target.values]
    for column in target.values:
        columns += list(column.side_columns())
    return columns


def _table(target: RowTarget) -> list[str]:
    name = qualified(target.schema, target.table)
    keys = [f"{quote(k.name)} {k.sql_type} NOT NULL" for k in target.keys]
    values = [f"{quote(n)} {t}" for n, t in _columns(target)]
    meta = [f"{quote(n)} {t}" for n, t in _META_COLUMNS]
    primary = ", ".join(quote(k.name) for k in target.keys)
    body = ", ".join([*keys, *values, *meta, f"PRIMARY KEY ({primary})"])
    statements = [f"CREATE TABLE IF NOT EXISTS {name} ({body})"]
    statements += [
        f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {quote(n)} {t}" for n, t in _columns(target)
    ]
    return statements


def _type(schema: str, name: str, attributes: Iterable[tuple[str, str]]) -> str:
    fields = ", ".join(f"{quote(a)} {t}" for a, t in attributes)
    # CREATE TYPE has no IF NOT EXISTS; the advisory lock makes the check race-free.
    return (
        "DO $cdc$ BEGIN IF to_regtype("
        + _literal(qualified(schema, name))
        + f") IS NULL THEN CREATE TYPE {qualified(schema, name)} AS ({fields}); END IF; END $cdc$"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _tombstones(layout: TableLayout) -> list[str]:
    name = qualified(layout.schema, layout.tombstones)
    keys = [f"{quote(k.name)} {k.sql_type} NOT NULL" for k in layout.partition]
    bounds = [f"{quote('_cdc_s_' + str(i))} {c.sql_type}" for i, c in enumerate(layout.clustering)]
    bounds += [f"{quote('_cdc_e_' + str(i))} {c.sql_type}" for i, c in enumerate(layout.clustering)]
    meta = [
        '"_cdc_id" text PRIMARY KEY',
        '"_cdc_ts" bigint NOT NULL',
        '"_cdc_partition" boolean NOT NULL',
        '"_cdc_start_len" smallint NOT NULL',
        '"_cdc_start_incl" boolean NOT NULL',
        '"_cdc_end_len" smallint NOT NULL',
        '"_cdc_end_incl" boolean NOT NULL',
        '"_cdc_created_at" timestamptz NOT NULL DEFAULT now()',
    ]
    partition = ", ".join(quote(k.name) for k in layout.partition)
    index = quote(layout.tombstones[:50] + "__pk")
    return [
        f"CREATE TABLE IF NOT EXISTS {name} ({', '.join([*keys, *meta, *bounds])})",
        f"CREATE INDEX IF NOT EXISTS {index} ON {name} ({partition})",
    ]


def _alive(target: RowTarget, alias: str) -> str:
    """SQL true for a row Cassandra returns: a live row marker, or a value in a column
    the table still has. A column dropped under ``drop_columns: keep`` stays in the
    table with its data, but no longer keeps its rows visible, as in Cassandra."""
    marker = f'coalesce({alias}."_cdc_live_at", {NEVER}) > {alias}."_cdc_deleted_at"'
    values = [f"{alias}.{quote(c.name)} IS NOT NULL" for c in target.values]
    return f"(NOT {alias}._cdc_deleted AND ({' OR '.join([marker, *values])}))"


def view_statements(layout: TableLayout) -> list[str]:
    """The live view: mirror rows Cassandra returns (:func:`_alive`), with the
    partition's static columns joined in, plus partitions that hold only static data
    (as Cassandra shows them: clustering columns null). Values of dropped columns kept
    by ``drop_columns: keep`` are in the tables, not in the view."""
    view = qualified(layout.schema, layout.view)
    main = layout.main
    keys = [quote(k.name) for k in main.keys]
    regular = [quote(c.name) for c in main.values]
    static = layout.static
    if static is None:
        columns = ", ".join([*keys, *regular, '"_cdc_writetime"', '"_cdc_updated_at"'])
        select = (
            f"SELECT {columns} FROM {qualified(main.schema, main.table)} m "
            f"WHERE {_alive(main, 'm')}"
        )
    else:
        joined = " AND ".join(f"s.{quote(k.name)} = m.{quote(k.name)}" for k in main.partition)
        statics = [f"s.{quote(c.name)}" for c in static.values]
        rows = ", ".join(
            [
                *(f"m.{k}" for k in keys),
                *(f"m.{c}" for c in regular),
                *statics,
                'greatest(m."_cdc_writetime", s."_cdc_writetime") AS "_cdc_writetime"',
                'm."_cdc_updated_at"',
            ]
        )
        only_static = ", ".join(
            [
                *(f"s.{quote(k.name)}" for k in main.partition),
                *(f"NULL::{k.sql_type} AS {quote(k.name)}" for k in main.clustering),
                *(f"NULL::{c.sql_type} AS {quote(c.name)}" for c in main.values),
                *statics,
                's."_cdc_writetime"',
                's."_cdc_updated_at"',
            ]
        )
        has_static = " OR ".join(f"{s} IS NOT NULL" for s in statics)
        select = (
            f"SELECT {rows} FROM {qualified(main.schema, main.table)} m "
            f"LEFT JOIN {qualified(static.schema, static.table)} s "
            f"ON {joined} AND NOT s._cdc_deleted WHERE {_alive(main, 'm')} "
            f"UNION ALL SELECT {only_static} FROM {qualified(static.schema, static.table)} s "
            f"WHERE NOT s._cdc_deleted AND ({has_static}) AND NOT EXISTS (SELECT 1 FROM "
            f"{qualified(main.schema, main.table)} m WHERE {joined} AND {_alive(main, 'm')})"
        )
    return [f"DROP VIEW IF EXISTS {view}", f"CREATE VIEW {view} AS {select}"]


def ensure_statements(layout: TableLayout) -> list[str]:
    """Create whatever of the layout is missing, then (re)create the view."""
    statements = [f"CREATE SCHEMA IF NOT EXISTS {quote(layout.schema)}"]
    targets = [layout.main] if layout.static is None else [layout.main, layout.static]
    for target in targets:
        statements += _table(target)
        statements.append(_type(target.schema, target.row_type, target.row_attributes()))
        if target.collections:
            statements.append(_type(target.schema, target.delta_type, target.delta_attributes()))
    statements += _tombstones(layout)
    statements.append(_type(layout.schema, layout.tombstone_type, layout.tombstone_attributes()))
    return statements + view_statements(layout)
