"""DDL for a table layout. Every statement is idempotent, so ensuring a table that is
already there (another writer, a restart, a re-applied schema change) is harmless.

The statements touch a layout's tables in the order writers lock them (the tombstone
table, the mirror table, the static table), so DDL waiting on a writer never holds a
lock that writer needs next. A complete layout is recognised by the comment its view
carries (:func:`fingerprint`): writers starting together then take no lock at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cdc_adapters.postgres.identifiers import qualified, quote
from cdc_adapters.postgres.layout import (
    NEVER,
    RowTarget,
    TableLayout,
    ValueColumn,
    element_attributes,
)
from cdc_adapters.postgres.statements import collection_value

__all__ = [
    "ensure_statements",
    "ensured_sql",
    "fingerprint",
    "lock_statement",
    "view_statements",
]

_META_COLUMNS = (
    ("_cdc_live_at", "bigint"),
    ("_cdc_live_exp", "bigint"),
    ("_cdc_deleted_at", f"bigint NOT NULL DEFAULT {NEVER}"),
    ("_cdc_writetime", "bigint NOT NULL"),
    ("_cdc_updated_at", "timestamptz NOT NULL DEFAULT now()"),
)
_NOW = '"_cdc_clock"."_cdc_now"'
_CLOCK = '(SELECT (extract(epoch FROM now()) * 1000000)::bigint AS "_cdc_now") AS "_cdc_clock"'


def lock_statement() -> str:
    """Serialises DDL in one schema across writers (``$1``: ``cdc:<schema>``; released
    at commit)."""
    return "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


def _columns(target: RowTarget) -> list[tuple[str, str]]:
    columns = [(c.name, c.sql_type) for c in target.values]
    for column in target.values:
        columns += list(column.side_columns(target.schema))
    return [*columns, *_META_COLUMNS]


def _table(target: RowTarget) -> list[str]:
    name = qualified(target.schema, target.table)
    keys = [f"{quote(k.name)} {k.sql_type} NOT NULL" for k in target.keys]
    values = [f"{quote(n)} {t}" for n, t in _columns(target)]
    primary = ", ".join(quote(k.name) for k in target.keys)
    body = ", ".join([*keys, *values, f"PRIMARY KEY ({primary})"])
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


def _shown(column: ValueColumn, alias: str) -> str:
    """A column's value as of now: a cell until it expires; a collection's stored value
    until its first element expires, after that the value of the elements still live."""
    value, exp = f"{alias}.{quote(column.name)}", f"{alias}.{quote(column.exp)}"
    current = f"{exp} IS NULL OR {exp} > {_NOW}"
    if not column.is_collection:
        return f"CASE WHEN {current} THEN {value} END"
    assert column.elements is not None
    live = f"e.f = 0 OR (e.f = 1 AND e.x > {_NOW})"
    return (
        f"CASE WHEN {current} THEN {value} ELSE (SELECT {collection_value(column, 'e')} "
        f"FROM unnest({alias}.{quote(column.elements)}) AS e WHERE {live}) END"
    )


def _alive(target: RowTarget, alias: str) -> str:
    """SQL true for a row Cassandra returns now: a live row marker (written after the
    row's deletions, not expired), or a current value in a column the table still has.
    A column dropped under ``drop_columns: keep`` stays in the table with its data, but
    no longer keeps its rows visible, as in Cassandra."""
    live, exp = f'{alias}."_cdc_live_at"', f'{alias}."_cdc_live_exp"'
    marker = (
        f'(coalesce({live}, {NEVER}) > {alias}."_cdc_deleted_at" '
        f"AND ({exp} IS NULL OR {exp} > {_NOW}))"
    )
    values = [f"({_shown(c, alias)}) IS NOT NULL" for c in target.values]
    return f"({' OR '.join([marker, *values])})"


def view_statements(layout: TableLayout) -> list[str]:
    """The live view: what Cassandra returns now. Mirror rows that are alive
    (:func:`_alive`), with the partition's static columns joined in, plus partitions
    that hold only static data (clustering columns null); values that expired are
    hidden. Values of dropped columns kept by ``drop_columns: keep`` are in the tables,
    not in the view."""
    view = qualified(layout.schema, layout.view)
    main = layout.main
    table = qualified(main.schema, main.table)
    keys = [quote(k.name) for k in main.keys]
    regular = [f"{_shown(c, 'm')} AS {quote(c.name)}" for c in main.values]
    static = layout.static
    if static is None:
        columns = ", ".join([*(f"m.{k}" for k in keys), *regular])
        select = (
            f'SELECT {columns}, m."_cdc_writetime", m."_cdc_updated_at" FROM {table} m '
            f"CROSS JOIN {_CLOCK} WHERE {_alive(main, 'm')}"
        )
    else:
        statics = qualified(static.schema, static.table)
        joined = " AND ".join(f"s.{quote(k.name)} = m.{quote(k.name)}" for k in main.partition)
        shown = [f"{_shown(c, 's')} AS {quote(c.name)}" for c in static.values]
        rows = ", ".join(
            [
                *(f"m.{k}" for k in keys),
                *regular,
                *shown,
                'greatest(m."_cdc_writetime", s."_cdc_writetime") AS "_cdc_writetime"',
                'm."_cdc_updated_at"',
            ]
        )
        only_static = ", ".join(
            [
                *(f"s.{quote(k.name)}" for k in main.partition),
                *(f"NULL::{k.sql_type} AS {quote(k.name)}" for k in main.clustering),
                *(f"NULL::{c.sql_type} AS {quote(c.name)}" for c in main.values),
                *shown,
                's."_cdc_writetime"',
                's."_cdc_updated_at"',
            ]
        )
        has_static = " OR ".join(f"({_shown(c, 's')}) IS NOT NULL" for c in static.values)
        select = (
            f"SELECT {rows} FROM {table} m CROSS JOIN {_CLOCK} LEFT JOIN {statics} s "
            f"ON {joined} WHERE {_alive(main, 'm')} "
            f"UNION ALL SELECT {only_static} FROM {statics} s CROSS JOIN {_CLOCK} "
            f"WHERE ({has_static}) AND NOT EXISTS (SELECT 1 FROM {table} m "
            f"WHERE {joined} AND {_alive(main, 'm')})"
        )
    return [f"DROP VIEW IF EXISTS {view}", f"CREATE VIEW {view} AS {select}"]


def _structure(layout: TableLayout) -> list[str]:
    statements = [f"CREATE SCHEMA IF NOT EXISTS {quote(layout.schema)}"]
    statements += _tombstones(layout)
    statements.append(_type(layout.schema, layout.tombstone_type, layout.tombstone_attributes()))
    for name, value_type in layout.element_types().items():
        statements.append(_type(layout.schema, name, element_attributes(value_type)))
    for target in layout.targets:
        statements += _table(target)
        statements.append(_type(target.schema, target.row_type, target.row_attributes()))
    return statements + view_statements(layout)


def fingerprint(layout: TableLayout) -> str:
    """What a complete layout's view is commented with: a digest of every statement
    that makes it, so a layout missing anything (or an older one) is told apart."""
    text = "\n".join(_structure(layout))
    return "cdc layout " + hashlib.sha256(text.encode()).hexdigest()[:16]


def ensured_sql() -> str:
    """``$1`` the view, ``$2`` the fingerprint: true when the layout is complete."""
    return "SELECT coalesce(obj_description(to_regclass($1), 'pg_class') = $2, false)"


def ensure_statements(layout: TableLayout) -> list[str]:
    """Create whatever of the layout is missing, (re)create the view, and mark the
    layout complete."""
    view = qualified(layout.schema, layout.view)
    return [*_structure(layout), f"COMMENT ON VIEW {view} IS {_literal(fingerprint(layout))}"]
