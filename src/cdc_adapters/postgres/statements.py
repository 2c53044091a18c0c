"""The SQL that applies collapsed writes, generated per table layout and cached.

All of it follows one rule set (ADR 0004): a row keeps, per column, the write
timestamp of its value; ``_cdc_deleted_at`` is the newest deletion covering the row
(its own, its partition's or a clustering range's); a value is visible only when
written after that. Values always travel as parameters: a batch is one array of a
composite row type, expanded with ``unnest``.
"""

from __future__ import annotations

from collections.abc import Callable

from cdc_adapters.postgres.identifiers import qualified, quote
from cdc_adapters.postgres.layout import NEVER, RowTarget, TableLayout, ValueColumn

__all__ = [
    "delta_sql",
    "insert_tombstones_sql",
    "refresh_deleted_sql",
    "tombstone_sql",
    "upsert_sql",
]

_LIVE, _DELETED_AT = '"_cdc_live_at"', '"_cdc_deleted_at"'
_DELETED, _WRITETIME, _UPDATED = '"_cdc_deleted"', '"_cdc_writetime"', '"_cdc_updated_at"'


def _visible_since(column: ValueColumn, ts: str, dts: str | None, floor: str) -> str:
    """Whether a stored value written at ``ts`` (newest element at ``dts``) outlives
    a deletion at ``floor``. A collection's ``ts`` is when it was last cleared."""
    if not column.is_collection:
        return f"coalesce({ts}, {NEVER}) > {floor}"
    newest = f"greatest({ts} + 1, {dts})" if dts else f"{ts} + 1"
    return f"coalesce({newest}, {NEVER}) > {floor}"


def _greater(column: ValueColumn, new: str, old: str) -> str:
    """SQL true when the value in row ``new`` serializes to greater bytes than the one in
    row ``old`` (unsigned, lexicographic: Cassandra's last tie-break), computed from the
    stored values where their type allows (text by its UTF-8 bytes, signed numbers with
    the negative ones after the positive ones), else from the tie columns holding them."""
    if column.tie is not None:
        tie = quote(column.tie)
        return f"{new}.{tie} > {old}.{tie}"
    a, b = f"{new}.{quote(column.name)}", f"{old}.{quote(column.name)}"
    name = column.codec.cql_type.name
    if name in ("ascii", "text"):
        return f'{a} COLLATE "C" > {b} COLLATE "C"'
    if name in ("tinyint", "smallint", "int", "bigint"):
        return f"({a} < 0, {a}) > ({b} < 0, {b})"
    if name == "timestamp":
        epoch = "'epoch'::timestamptz"
        return f"({a} < {epoch}, {a}) > ({b} < {epoch}, {b})"
    if name in ("float", "double"):

        def key(value: str) -> str:
            negative = f"({value} < 0 OR {value}::text = '-0')"
            return f"({negative}, CASE WHEN {negative} THEN -{value} ELSE {value} END)"

        return f"{key(a)} > {key(b)}"
    return f"{a} > {b}"


def _covers(layout: TableLayout, row: Callable[[int], str]) -> str:
    """SQL true when tombstone ``tb`` covers the row whose clustering values are
    ``row(0..n-1)``: bounds are prefixes of the clustering columns, in clustering order
    (along a DESC column the start bound holds the larger value)."""
    clustering = layout.clustering
    if not clustering:
        return "true"

    def side(prefix: str, length: str, inclusive: str, after: bool) -> str:
        options = [f"tb.{length} = 0"]
        for n in range(1, len(clustering) + 1):
            bound = [f"tb.{quote(f'_cdc_{prefix}_{j}')}" for j in range(n)]
            mine = [row(j) for j in range(n)]
            beyond = _beyond(mine, bound, [c.descending for c in clustering[:n]], after)
            equal = " AND ".join(f"{m} = {b}" for m, b in zip(mine, bound, strict=True))
            options.append(f"(tb.{length} = {n} AND ({beyond} OR (tb.{inclusive} AND {equal})))")
        return "(" + " OR ".join(options) + ")"

    start = side("s", '"_cdc_start_len"', '"_cdc_start_incl"', after=True)
    end = side("e", '"_cdc_end_len"', '"_cdc_end_incl"', after=False)
    return f"({start} AND {end})"


def _beyond(mine: list[str], bound: list[str], descending: list[bool], after: bool) -> str:
    """SQL true when the row lies strictly after (or before) the bound prefix in
    clustering order: equal on a leading part, then past it on the next column, each
    column compared in its own direction."""
    options = []
    for i, (value, limit, desc) in enumerate(zip(mine, bound, descending, strict=True)):
        greater = after != desc
        compared = f"{value} {'>' if greater else '<'} {limit}"
        leading = [f"{m} = {b}" for m, b in zip(mine[:i], bound[:i], strict=True)]
        options.append("(" + " AND ".join([*leading, compared]) + ")")
    return "(" + " OR ".join(options) + ")"


def _floor(layout: TableLayout, target: RowTarget) -> str:
    """The newest partition or range deletion covering row ``u`` of the batch.

    The per-row probe only runs when the table has tombstones at all: the EXISTS is
    uncorrelated, so PostgreSQL evaluates it once per statement (an InitPlan), in the
    statement's own snapshot, which keeps the result what the probe alone would give.
    """
    tomb = qualified(layout.schema, layout.tombstones)
    match = [f"tb.{quote(k.name)} = u.k{i}" for i, k in enumerate(target.partition)]
    if target.static:
        match.append('tb."_cdc_partition"')
    else:
        offset = len(target.partition)
        match.append(_covers(layout, lambda j: f"u.k{offset + j}"))
    return (
        f"CASE WHEN (SELECT EXISTS (SELECT FROM {tomb})) THEN "
        f'(SELECT max(tb."_cdc_ts") FROM {tomb} tb WHERE {" AND ".join(match)}) END'
    )


def upsert_sql(layout: TableLayout, target: RowTarget) -> str:
    """Insert or merge whole rows: ``$1`` is an array of ``target.row_type``."""
    table = qualified(target.schema, target.table)
    row_type = qualified(target.schema, target.row_type)
    columns = [quote(k.name) for k in target.keys]
    selects = [f"r.k{i}" for i in range(len(target.keys))]
    inserted_visible = [f"coalesce(r.live, {NEVER}) > r._floor"]
    sets: list[str] = []
    new_values: list[str] = []
    wins: list[str] = []
    nf = f"greatest(t.{_DELETED_AT}, excluded.{_DELETED_AT})"
    for i, c in enumerate(target.values):
        name, ts = quote(c.name), quote(c.ts)
        shown = _visible_since(c, f"r.t{i}", None, "r._floor")
        columns += [name, ts]
        selects += [f"CASE WHEN {shown} THEN r.v{i} END", f"r.t{i}"]
        inserted_visible.append(f"({shown} AND r.v{i} IS NOT NULL)")
        if c.dts:
            columns.append(quote(c.dts))
            selects.append("NULL::bigint")
        if c.keys:
            columns.append(quote(c.keys))
            selects.append(f"CASE WHEN {shown} THEN r.l{i} END")
        if c.tie:
            columns.append(quote(c.tie))
            selects.append(f"CASE WHEN {shown} THEN r.b{i} END")
        incoming = _visible_since(c, f"excluded.{ts}", None, nf)
        if c.is_collection:
            tie = f"excluded.{name} IS NOT NULL AND t.{name} IS NULL"
        else:
            tie = (
                f"((excluded.{name} IS NULL AND t.{name} IS NOT NULL) OR (excluded.{name} "
                f"IS NOT NULL AND t.{name} IS NOT NULL AND "
                f"{_greater(c, 'excluded', 't')}))"
            )
        win = (
            f"({incoming} AND (excluded.{ts} > coalesce(t.{ts}, {NEVER}) "
            f"OR (excluded.{ts} = t.{ts} AND {tie})))"
        )
        keep = _visible_since(c, f"t.{ts}", f"t.{quote(c.dts)}" if c.dts else None, nf)
        value = f"CASE WHEN {win} THEN excluded.{name} WHEN {keep} THEN t.{name} END"
        wins.append(win)
        new_values.append(f"({value}) IS NOT NULL")
        sets += [f"{name} = {value}", f"{ts} = CASE WHEN {win} THEN excluded.{ts} ELSE t.{ts} END"]
        if c.dts:
            dts = quote(c.dts)
            sets.append(f"{dts} = CASE WHEN {win} THEN NULL WHEN {keep} THEN t.{dts} END")
        if c.keys:
            keys = quote(c.keys)
            sets.append(
                f"{keys} = CASE WHEN {win} THEN excluded.{keys} WHEN {keep} THEN t.{keys} END"
            )
        if c.tie:
            tie_column = quote(c.tie)
            sets.append(
                f"{tie_column} = CASE WHEN {win} THEN excluded.{tie_column} "
                f"WHEN {keep} THEN t.{tie_column} END"
            )
    columns += [_LIVE, _DELETED_AT, _WRITETIME, _UPDATED, _DELETED]
    selects += ["r.live", "r._floor", "r.wt", "now()", f"NOT ({' OR '.join(inserted_visible)})"]
    live = f"greatest(t.{_LIVE}, excluded.{_LIVE})"
    sets += [
        f"{_LIVE} = {live}",
        f"{_DELETED_AT} = {nf}",
        f"{_WRITETIME} = greatest(t.{_WRITETIME}, excluded.{_WRITETIME})",
        f"{_UPDATED} = now()",
        f"{_DELETED} = NOT (coalesce({live}, {NEVER}) > {nf}"
        + "".join(f" OR {v}" for v in new_values)
        + ")",
    ]
    changed = [
        f"excluded.{_DELETED_AT} > t.{_DELETED_AT}",
        f"coalesce(excluded.{_LIVE}, {NEVER}) > coalesce(t.{_LIVE}, {NEVER})",
        *wins,
    ]
    keys = ", ".join(quote(k.name) for k in target.keys)
    return (
        f"INSERT INTO {table} AS t ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} FROM (SELECT u.*, greatest(coalesce(u.rowdel, {NEVER}), "
        f"coalesce({_floor(layout, target)}, {NEVER})) AS _floor "
        # OFFSET 0 keeps the planner from inlining the subquery, which would evaluate
        # the floor lookup once per reference to it instead of once per row.
        f"FROM unnest($1::{row_type}[]) AS u OFFSET 0) AS r "
        f"ON CONFLICT ({keys}) DO UPDATE SET {', '.join(sets)} "
        f"WHERE {' OR '.join(changed)}"
    )


def _pairs(keys: str, values: str, json: bool, order: int, alias: str) -> str:
    """(key, value, order) rows of a list held as parallel keys and values."""
    if not json:
        return (
            f"SELECT {alias}.k, {alias}.v, {order} AS o "
            f"FROM unnest({keys}, {values}) AS {alias}(k, v)"
        )
    return (
        f"SELECT {alias}k.k, {alias}v.v, {order} AS o FROM unnest({keys}) WITH ORDINALITY "
        f"AS {alias}k(k, i) JOIN jsonb_array_elements({values}) WITH ORDINALITY "
        f"AS {alias}v(v, i) ON {alias}k.i = {alias}v.i"
    )


def _merge(column: ValueColumn, i: int) -> tuple[str, str | None]:
    """The merged value of a non-frozen collection (and a list's merged keys)."""
    name, sql_type = f"t.{quote(column.name)}", column.sql_type
    added, removed = f"d.a{i}", f"d.d{i}"
    if column.shape == "set" and column.codec.is_json:
        return (
            f"(SELECT jsonb_agg(DISTINCT x.e ORDER BY x.e) FROM jsonb_array_elements("
            f"coalesce({name}, '[]'::jsonb) || coalesce({added}, '[]'::jsonb)) AS x(e) "
            f"WHERE x.e NOT IN (SELECT z.y FROM jsonb_array_elements("
            f"coalesce({removed}, '[]'::jsonb)) AS z(y)))",
            None,
        )
    if column.shape == "set":
        return (
            f"nullif(ARRAY(SELECT DISTINCT x.e FROM unnest(coalesce({name}, '{{}}'::{sql_type}) "
            f"|| coalesce({added}, '{{}}'::{sql_type})) AS x(e) WHERE x.e <> ALL "
            f"(coalesce({removed}, '{{}}'::{sql_type})) ORDER BY x.e), '{{}}'::{sql_type})",
            None,
        )
    if column.shape in ("map", "udt"):
        return (
            f"nullif((coalesce({name}, '{{}}'::jsonb) - coalesce({removed}, '{{}}'::text[])) "
            f"|| coalesce({added}, '{{}}'::jsonb), '{{}}'::jsonb)",
            None,
        )
    assert column.keys is not None
    json = column.codec.is_json
    union = (
        f"{_pairs(f'd.n{i}', added, json, 0, 'n')} UNION ALL "
        f"{_pairs(f't.{quote(column.keys)}', name, json, 1, 'c')}"
    )
    merged = (
        f"FROM (SELECT DISTINCT ON (u.k) u.k, u.v FROM ({union}) AS u "
        f"WHERE u.k <> ALL (coalesce({removed}, '{{}}'::text[])) ORDER BY u.k, u.o) AS p"
    )
    aggregate = "jsonb_agg" if json else "array_agg"
    return (
        f"(SELECT {aggregate}(p.v ORDER BY p.k) {merged})",
        f"(SELECT array_agg(p.k ORDER BY p.k) {merged})",
    )


def _key_match(target: RowTarget, alias: str) -> str:
    return " AND ".join(f"t.{quote(k.name)} = {alias}.k{i}" for i, k in enumerate(target.keys))


def delta_sql(target: RowTarget) -> str:
    """Apply element changes (``$1``: array of ``target.delta_type``) to rows that the
    upsert of the same batch has just written, so they exist and are locked."""
    sets = []
    for i, column in enumerate(target.values):
        if not column.is_collection:
            continue
        assert column.dts is not None
        name, ts, dts = quote(column.name), quote(column.ts), quote(column.dts)
        ok = f"(d.s{i} > coalesce(t.{ts}, {NEVER}) AND d.s{i} > t.{_DELETED_AT})"
        value, keys = _merge(column, i)
        sets.append(f"{name} = CASE WHEN {ok} THEN {value} ELSE t.{name} END")
        sets.append(f"{dts} = CASE WHEN {ok} THEN greatest(t.{dts}, d.s{i}) ELSE t.{dts} END")
        if keys is not None and column.keys is not None:
            sets.append(
                f"{quote(column.keys)} = CASE WHEN {ok} THEN {keys} ELSE t.{quote(column.keys)} END"
            )
    table = qualified(target.schema, target.table)
    delta_type = qualified(target.schema, target.delta_type)
    return (
        f"UPDATE {table} AS t SET {', '.join(sets)}, {_UPDATED} = now() "
        f"FROM unnest($1::{delta_type}[]) AS d WHERE {_key_match(target, 'd')}"
    )


def _stored_visible(target: RowTarget) -> str:
    parts = [f"coalesce(t.{_LIVE}, {NEVER}) > t.{_DELETED_AT}"]
    parts += [f"t.{quote(c.name)} IS NOT NULL" for c in target.values]
    return " OR ".join(parts)


def refresh_deleted_sql(target: RowTarget) -> str:
    """Recompute the soft-delete flag of the rows a delta statement changed."""
    table = qualified(target.schema, target.table)
    delta_type = qualified(target.schema, target.delta_type)
    flag = f"NOT ({_stored_visible(target)})"
    return (
        f"UPDATE {table} AS t SET {_DELETED} = {flag} FROM unnest($1::{delta_type}[]) AS d "
        f"WHERE {_key_match(target, 'd')} AND t.{_DELETED} IS DISTINCT FROM {flag}"
    )


def insert_tombstones_sql(layout: TableLayout) -> str:
    """Record partition and range deletions (``$1``: array of the tombstone type)."""
    columns = [quote(k.name) for k in layout.partition]
    columns += [
        '"_cdc_id"', '"_cdc_ts"', '"_cdc_partition"', '"_cdc_start_len"',
        '"_cdc_start_incl"', '"_cdc_end_len"', '"_cdc_end_incl"',
    ]  # fmt: skip
    columns += [quote(f"_cdc_s_{i}") for i in range(len(layout.clustering))]
    columns += [quote(f"_cdc_e_{i}") for i in range(len(layout.clustering))]
    tomb = qualified(layout.schema, layout.tombstones)
    tomb_type = qualified(layout.schema, layout.tombstone_type)
    return (
        f"INSERT INTO {tomb} ({', '.join(columns)}) SELECT * FROM unnest($1::{tomb_type}[]) "
        'ON CONFLICT ("_cdc_id") DO NOTHING'
    )


def tombstone_sql(
    layout: TableLayout,
    target: RowTarget,
    start: tuple[int, bool] = (0, True),
    end: tuple[int, bool] = (0, True),
) -> str:
    """Apply one deletion at ``$1`` to the stored rows it covers.

    Parameters: ``$1`` the deletion's timestamp, then the partition key, then the
    ``start[0]`` start bound values and the ``end[0]`` end bound values.
    """
    table = qualified(target.schema, target.table)
    params = iter(range(2, 1000))
    where = [f"t.{quote(k.name)} = ${next(params)}::{k.sql_type}" for k in target.partition]
    for (length, inclusive), after in ((start, True), (end, False)):
        if length:
            columns = target.clustering[:length]
            mine = [f"t.{quote(c.name)}" for c in columns]
            theirs = [f"${next(params)}::{c.sql_type}" for c in columns]
            beyond = _beyond(mine, theirs, [c.descending for c in columns], after)
            if inclusive:
                equal = " AND ".join(f"{m} = {b}" for m, b in zip(mine, theirs, strict=True))
                beyond = f"({beyond} OR ({equal}))"
            where.append(beyond)
    where.append(f"t.{_DELETED_AT} < $1::bigint")
    sets, visible = [], [f"coalesce(t.{_LIVE}, {NEVER}) > $1::bigint"]
    for c in target.values:
        keep = _visible_since(
            c, f"t.{quote(c.ts)}", f"t.{quote(c.dts)}" if c.dts else None, "$1::bigint"
        )
        sets.append(f"{quote(c.name)} = CASE WHEN {keep} THEN t.{quote(c.name)} END")
        visible.append(f"({keep} AND t.{quote(c.name)} IS NOT NULL)")
        for side in (c.dts, c.keys):
            if side:
                sets.append(f"{quote(side)} = CASE WHEN {keep} THEN t.{quote(side)} END")
    sets += [
        f"{_DELETED_AT} = $1::bigint",
        f"{_UPDATED} = now()",
        f"{_DELETED} = NOT ({' OR '.join(visible)})",
    ]
    return f"UPDATE {table} AS t SET {', '.join(sets)} WHERE {' AND '.join(where)}"
