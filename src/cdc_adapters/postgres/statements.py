"""The SQL that applies a batch, generated per table layout and cached.

All of it applies Cassandra's reconciliation (:mod:`cdc_domain.reconciliation`, ADR
0004) between what a row holds and what a batch brings: of two versions of a cell the
greater timestamp wins; at equal timestamps a tombstone, then an expiring cell (the
later expiry first), then the greater serialized value. A non-frozen collection is a
set of such cells, one per element, under the collection's own tombstone. A row's
``_cdc_deleted_at`` is the newest deletion covering it (its own, its partition's or a
clustering range's): a cell, marker or element is visible only when written after it.

Values always travel as parameters: a batch is one array of a composite row type,
expanded with ``unnest``.
"""

from __future__ import annotations

from collections.abc import Callable

from cdc_adapters.postgres.identifiers import qualified, quote
from cdc_adapters.postgres.layout import ELEMENT_FIELDS, NEVER, RowTarget, TableLayout, ValueColumn

__all__ = [
    "apply_tombstones_sql",
    "collection_value",
    "insert_tombstones_sql",
    "purge_deleted_sql",
    "purge_expired_sql",
    "upsert_sql",
]

_LIVE, _LIVE_EXP, _DELETED_AT = '"_cdc_live_at"', '"_cdc_live_exp"', '"_cdc_deleted_at"'
_WRITETIME, _UPDATED = '"_cdc_writetime"', '"_cdc_updated_at"'
_SECONDS = 1_000_000


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


def _kind(column: ValueColumn, row: str) -> str:
    """A stored cell's kind, ranked as Cassandra ranks them at equal timestamps: a
    tombstone (no value) over an expiring cell over a plain one."""
    return (
        f"CASE WHEN {row}.{quote(column.name)} IS NULL THEN 2 "
        f"WHEN {row}.{quote(column.exp)} IS NOT NULL THEN 1 ELSE 0 END"
    )


def _tie(column: ValueColumn) -> str:
    """SQL true when the incoming cell beats the stored one of the same timestamp."""
    new, old = _kind(column, "excluded"), _kind(column, "t")
    exp = quote(column.exp)
    later = f"excluded.{exp} / {_SECONDS}", f"t.{exp} / {_SECONDS}"
    return (
        f"CASE WHEN {new} <> {old} THEN {new} > {old} WHEN excluded.{quote(column.name)} "
        f"IS NULL THEN false WHEN {later[0]} <> {later[1]} THEN {later[0]} > {later[1]} "
        f"ELSE {_greater(column, 'excluded', 't')} END"
    )


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


def collection_value(column: ValueColumn, element: str) -> str:
    """The aggregate that makes a collection's value of its elements' versions
    ``element`` (filtered by the caller to the live ones): an array or jsonb array in
    the list's cell order or the set's element order, a jsonb object for a map or UDT."""
    if column.shape in ("map", "udt"):
        return f"jsonb_object_agg({element}.k, {element}.v)"
    if column.element_value_type == "jsonb":
        return f'jsonb_agg({element}.v ORDER BY {element}.k COLLATE "C")'
    if column.shape == "set":
        return f"array_agg({element}.v ORDER BY {element}.v)"
    return f'array_agg({element}.v ORDER BY {element}.k COLLATE "C")'


def _merged(column: ValueColumn, target: RowTarget, element: str) -> tuple[str, str, str]:
    """Aggregates over element versions ``element`` making a collection's (value,
    versions, first expiry): the value of the live ones, every version (tombstones too:
    they must keep beating older writes that arrive late) as the element type's array,
    and the first expiry, after which the value is no longer current."""
    assert column.element_type is not None
    fields = ", ".join(f"{element}.{f}" for f in ELEMENT_FIELDS)
    element_type = qualified(target.schema, column.element_type)
    return (
        f"{collection_value(column, element)} FILTER (WHERE {element}.f < 2)",
        f"array_agg(ROW({fields})::{element_type} ORDER BY {element}.k)",
        f"min({element}.x) FILTER (WHERE {element}.f = 1)",
    )


def _collection_sets(column: ValueColumn, target: RowTarget) -> tuple[list[str], str]:
    """The SET clauses merging a stored collection with an incoming one, and the
    condition under which anything changes (new element versions, a newer collection
    tombstone, a newer deletion of the row)."""
    name, ts, exp = quote(column.name), quote(column.ts), quote(column.exp)
    assert column.elements is not None
    elements = quote(column.elements)
    changed = (
        f"(excluded.{elements} IS NOT NULL OR coalesce(excluded.{ts}, {NEVER}) > "
        f"coalesce(t.{ts}, {NEVER}) OR excluded.{_DELETED_AT} > t.{_DELETED_AT})"
    )
    cut = (
        f"greatest(coalesce(t.{ts}, {NEVER}), coalesce(excluded.{ts}, {NEVER}), "
        f"t.{_DELETED_AT}, excluded.{_DELETED_AT})"
    )
    # The greatest version of each element by Cassandra's rank: timestamp, then kind
    # (tombstone, expiring, live), then expiry in seconds, then serialized value.
    greatest = (
        f"SELECT DISTINCT ON (u.k) u.* FROM (SELECT * FROM unnest(t.{elements}) UNION ALL "
        f"SELECT * FROM unnest(excluded.{elements})) AS u WHERE {changed} AND u.t > {cut} "
        f"ORDER BY u.k, u.t DESC, u.f DESC, u.x / {_SECONDS} DESC, u.b DESC"
    )
    value, versions, first = _merged(column, target, "m")
    return [
        f"{ts} = greatest(t.{ts}, excluded.{ts})",
        f"({name}, {elements}, {exp}) = (SELECT CASE WHEN {changed} THEN {value} "
        f"ELSE t.{name} END, CASE WHEN {changed} THEN {versions} ELSE t.{elements} END, "
        f"CASE WHEN {changed} THEN {first} ELSE t.{exp} END FROM ({greatest}) AS m)",
    ], changed


def _cell_sets(column: ValueColumn) -> tuple[list[str], str]:
    """The SET clauses keeping the greater of the stored and the incoming version of a
    cell, and the condition for the incoming one winning. A stored value is non-null
    only while visible, so it stays unless the incoming row's deletion covers it."""
    name, ts, exp = quote(column.name), quote(column.ts), quote(column.exp)
    # A CASE, not AND/OR: its first branch ends the work for the columns a row does not
    # write (most of them, in a partial update), where NULLs would otherwise carry the
    # evaluation through every comparison down to the tie-break.
    win = (
        f"(CASE WHEN excluded.{ts} IS NULL OR excluded.{ts} <= t.{_DELETED_AT} "
        f"OR excluded.{ts} <= excluded.{_DELETED_AT} THEN false "
        f"WHEN t.{ts} IS NULL OR excluded.{ts} > t.{ts} THEN true "
        f"WHEN excluded.{ts} < t.{ts} THEN false ELSE {_tie(column)} END)"
    )
    keep = f"t.{ts} > excluded.{_DELETED_AT}"
    sets = [
        f"{name} = CASE WHEN {win} THEN excluded.{name} WHEN {keep} THEN t.{name} END",
        # The newer timestamp even when the newer version lost to a deletion: it is at
        # or below that deletion then, so the cell it leaves (no value) stays hidden.
        f"{ts} = greatest(t.{ts}, excluded.{ts})",
        f"{exp} = CASE WHEN {win} THEN excluded.{exp} ELSE t.{exp} END",
    ]
    if column.tie is not None:
        tie = quote(column.tie)
        sets.append(f"{tie} = CASE WHEN {win} THEN excluded.{tie} WHEN {keep} THEN t.{tie} END")
    return sets, win


def upsert_sql(layout: TableLayout, target: RowTarget) -> str:
    """Insert or merge whole rows: ``$1`` is an array of ``target.row_type``.

    A new row keeps what the deletions already recorded (its own, and the partition's
    and ranges' in the tombstone table) leave visible; a collection keeps the element
    versions above its own tombstone and those deletions. An existing row merges cell
    by cell; the ``WHERE`` skips rows the batch does not change (a replay, a late
    older write), which then cost no new row version.
    """
    table = qualified(target.schema, target.table)
    row_type = qualified(target.schema, target.row_type)
    columns = [quote(k.name) for k in target.keys]
    selects = [f"r.k{i}" for i in range(len(target.keys))]
    laterals: list[str] = []
    sets: list[str] = []
    changed = [f"excluded.{_DELETED_AT} > t.{_DELETED_AT}"]
    for i, c in enumerate(target.values):
        name, ts, exp = quote(c.name), quote(c.ts), quote(c.exp)
        if c.is_collection:
            assert c.elements is not None
            value, versions, first = _merged(c, target, "e")
            laterals.append(
                f"LEFT JOIN LATERAL (SELECT {value} AS v, {versions} AS s, {first} AS x "
                f"FROM unnest(r.e{i}) AS e WHERE e.t > greatest(coalesce(r.t{i}, {NEVER}), "
                f"r._floor)) AS l{i} ON true"
            )
            columns += [name, ts, quote(c.elements), exp]
            selects += [f"l{i}.v", f"r.t{i}", f"l{i}.s", f"l{i}.x"]
            merge, change = _collection_sets(c, target)
        else:
            shown = f"r.t{i} > r._floor"
            columns += [name, ts, exp]
            selects += [f"CASE WHEN {shown} THEN r.v{i} END", f"r.t{i}", f"r.x{i}"]
            if c.tie is not None:
                columns.append(quote(c.tie))
                selects.append(f"CASE WHEN {shown} THEN r.b{i} END")
            merge, change = _cell_sets(c)
        sets += merge
        changed.append(change)
    marker = (
        f"(excluded.{_LIVE} > coalesce(t.{_LIVE}, {NEVER}) OR (excluded.{_LIVE} = t.{_LIVE} "
        f"AND excluded.{_LIVE_EXP} IS NOT NULL AND (t.{_LIVE_EXP} IS NULL OR "
        f"excluded.{_LIVE_EXP} > t.{_LIVE_EXP})))"
    )
    changed.append(marker)
    columns += [_LIVE, _LIVE_EXP, _DELETED_AT, _WRITETIME, _UPDATED]
    selects += ["r.live", "r.lx", "r._floor", "r.wt", "now()"]
    sets += [
        f"{_LIVE} = CASE WHEN {marker} THEN excluded.{_LIVE} ELSE t.{_LIVE} END",
        f"{_LIVE_EXP} = CASE WHEN {marker} THEN excluded.{_LIVE_EXP} ELSE t.{_LIVE_EXP} END",
        f"{_DELETED_AT} = greatest(t.{_DELETED_AT}, excluded.{_DELETED_AT})",
        f"{_WRITETIME} = greatest(t.{_WRITETIME}, excluded.{_WRITETIME})",
        f"{_UPDATED} = now()",
    ]
    keys = ", ".join(quote(k.name) for k in target.keys)
    return (
        f"INSERT INTO {table} AS t ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} FROM (SELECT u.*, greatest(coalesce(u.rowdel, {NEVER}), "
        f"coalesce({_floor(layout, target)}, {NEVER})) AS _floor "
        # OFFSET 0 keeps the planner from inlining the subquery, which would evaluate
        # the floor lookup once per reference to it instead of once per row.
        f"FROM unnest($1::{row_type}[]) AS u OFFSET 0) AS r {' '.join(laterals)} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {', '.join(sets)} "
        f"WHERE {' OR '.join(changed)}"
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


def apply_tombstones_sql(layout: TableLayout, target: RowTarget) -> str:
    """Apply partition and range deletions (``$1``: their ids, already recorded in the
    tombstone table) to every stored row they cover, in one statement: each covered
    row's deletion time becomes the newest covering one, and what it hides goes."""
    table = qualified(target.schema, target.table)
    tomb = qualified(layout.schema, layout.tombstones)
    keys = [quote(k.name) for k in target.keys]
    match = [f"tb.{quote(k.name)} = m.{quote(k.name)}" for k in target.partition]
    if target.static:
        match.append('tb."_cdc_partition"')
    else:
        match.append(_covers(layout, lambda j: f"m.{quote(target.clustering[j].name)}"))
    stored = ", ".join(f"m.{k}" for k in keys)
    covered = (
        f'SELECT {stored}, max(tb."_cdc_ts") AS "_cdc_floor" FROM {tomb} AS tb '
        f"JOIN {table} AS m ON {' AND '.join(match)} "
        f'WHERE tb."_cdc_id" = ANY($1::text[]) GROUP BY {stored}'
    )
    floor = 's."_cdc_floor"'
    sets = []
    for c in target.values:
        name, ts = quote(c.name), quote(c.ts)
        if c.is_collection:
            assert c.elements is not None
            elements = quote(c.elements)
            value, versions, first = _merged(c, target, "e")
            sets.append(
                f"({name}, {elements}, {quote(c.exp)}) = (SELECT {value}, {versions}, {first} "
                f"FROM unnest(t.{elements}) AS e WHERE e.t > "
                f"greatest({floor}, coalesce(t.{ts}, {NEVER})))"
            )
            continue
        sets.append(f"{name} = CASE WHEN t.{ts} > {floor} THEN t.{name} END")
        if c.tie is not None:
            tie = quote(c.tie)
            sets.append(f"{tie} = CASE WHEN t.{ts} > {floor} THEN t.{tie} END")
    sets += [f"{_DELETED_AT} = {floor}", f"{_UPDATED} = now()"]
    same = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    return (
        f"UPDATE {table} AS t SET {', '.join(sets)} FROM ({covered}) AS s "
        f"WHERE {same} AND t.{_DELETED_AT} < {floor}"
    )


def purge_deleted_sql(target: RowTarget) -> str:
    """Delete rows that show nothing (no marker or value outlives their deletions) and
    whose every timestamp, deletions' included, is older than ``$1``."""
    table = qualified(target.schema, target.table)
    shows = [f"coalesce({_LIVE}, {NEVER}) > {_DELETED_AT}"]
    shows += [f"{quote(c.name)} IS NOT NULL" for c in target.values]
    return (
        f"DELETE FROM {table} WHERE NOT ({' OR '.join(shows)}) "
        f"AND greatest({_WRITETIME}, {_DELETED_AT}) < $1"
    )


def purge_expired_sql(target: RowTarget) -> str:
    """Delete rows whose every cell, element and marker expired before ``$1`` and that
    hold no deletion of any kind: such a row is what Cassandra purges once its expired
    cells have turned into tombstones and those are old enough to go. A row holding a
    deletion is left to the tombstone purge, which knows how old that is."""
    table = qualified(target.schema, target.table)
    gone = [
        f"{_DELETED_AT} = {NEVER}",
        f"({_LIVE} IS NULL OR {_LIVE_EXP} <= $1)",
    ]
    for c in target.values:
        ts, exp = quote(c.ts), quote(c.exp)
        if c.is_collection:
            assert c.elements is not None
            gone.append(
                f"{ts} IS NULL AND NOT EXISTS (SELECT FROM unnest({quote(c.elements)}) AS e "
                "WHERE e.f <> 1 OR e.x > $1)"
            )
        else:
            gone.append(f"({ts} IS NULL OR {exp} <= $1)")
    return f"DELETE FROM {table} WHERE {' AND '.join(gone)}"
