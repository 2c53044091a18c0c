"""The current-state view: ``<table>`` shows what Cassandra returns, read from the states.

It merges each aggregating table's states by key (``GROUP BY``: ClickHouse 18.16 pushes
a query's condition on the key into such a subquery, and never into a ``FINAL`` one, so
a lookup by key reads only that key's parts), joins a row to its
partition's tombstones and statics and to its collections' elements, and decides in
SQL what :class:`~cdc_domain.mirror.MirrorState` decides in Python: a cell shows when
it is a value (not a tombstone, not expired at ``now()``) written after the newest
tombstone covering it (its row's, its partition's, the range tombstones whose bounds
contain its clustering values, in the table's clustering order); an element also needs
to be newer than its column's deletion; a row shows when its marker or a cell of a
column the table still has is live. A partition whose only live data is static shows
as one row with null clustering values, as Cassandra returns it.

ClickHouse 18.16 allows one JOIN per SELECT, so the joins nest; and it drops a column
that only a lambda uses when a query selects fewer columns than the view has, so no
lambda here captures a column: what one needs is passed in as an array argument
(``replicate``). The SQL carries a hash of itself (:attr:`ViewSql.token`) so the sink
recreates the view only when it changed.
"""

from __future__ import annotations

import hashlib

import attrs

from cdc_adapters.clickhouse.cells import NOW, live_sql, null_sql, rest_sql
from cdc_adapters.clickhouse.sql import quote_identifier, quote_string
from cdc_adapters.clickhouse.tables import Column, TableLayout

__all__ = ["ViewSql", "view_sql"]

_TOKEN = "_cdc_view_token"


@attrs.frozen(slots=True)
class ViewSql:
    select: str
    token: str


def view_sql(layout: TableLayout) -> ViewSql:
    """The SELECT of ``layout``'s current-state view."""
    body = _Builder(layout).select()
    token = "_cdc_view_" + hashlib.sha256(body.encode()).hexdigest()[:16]
    return ViewSql(body.replace(_TOKEN, token), token)


def _q(name: str) -> str:
    return name if name.startswith("`") else quote_identifier(name)


class _Builder:
    def __init__(self, layout: TableLayout) -> None:
        self.layout = layout
        self.keys = [n for n, _ in layout.keys]
        self.pk = list(layout.partition_names)
        self.index = {c.name: i for i, c in enumerate(layout.columns)}
        self.aliases: list[str] = []

    # ------------------------------------------------------------------ sources

    def rows(self) -> str:
        layout = self.layout
        states = [
            f"1 AS `{_TOKEN}`",
            "maxMerge(`_cdc_marker`) AS `_cdc_m`",
            "maxMerge(`_cdc_deleted`) AS `_cdc_d`",
            *(f"maxMerge({_q(c.name)}) AS {self.cell(c)}" for c in layout.regular),
        ]
        keys = self.list(self.keys)
        return f"SELECT {keys}, {', '.join(states)} FROM {layout.rows} GROUP BY {keys}"

    def partition(self) -> tuple[str, list[str]]:
        """The partition states (and their static elements), and their names."""
        layout = self.layout
        states = [
            "maxMerge(`_cdc_deleted`) AS `_cdc_pd`",
            "groupUniqArrayMerge(`_cdc_ranges`) AS `_cdc_pr`",
            *(f"maxMerge({_q(c.name)}) AS {self.cell(c)}" for c in layout.statics),
        ]
        names = [*self.pk, "`_cdc_pd`", "`_cdc_pr`", *(self.cell(c) for c in layout.statics)]
        pk = self.list(self.pk)
        select = f"SELECT {pk}, {', '.join(states)} FROM {layout.partition} GROUP BY {pk}"
        multicell = [c for c in layout.statics if c.elements is not None]
        if not multicell:
            return select, names
        return self.join(select, names, multicell, self.pk)

    def join(
        self, left: str, names: list[str], columns: list[Column], using: list[str]
    ) -> tuple[str, list[str]]:
        """``left`` with each of ``columns``' (element key, cell) pairs per ``using`` key."""
        listed = ", ".join(quote_string(c.name) for c in columns)
        arrays = ", ".join(
            f"groupArrayIf((`_cdc_element`, `_cdc_x`), `_cdc_column` = {quote_string(c.name)}) "
            f"AS {self.elements(c)}"
            for c in columns
        )
        by = self.list(using)
        keys = self.list(self.keys)
        inner = (
            f"SELECT {keys}, `_cdc_column`, `_cdc_element`, maxMerge(`_cdc_cell`) AS `_cdc_x` "
            f"FROM {self.layout.elements} WHERE `_cdc_column` IN ({listed}) "
            f"GROUP BY {keys}, `_cdc_column`, `_cdc_element`"
        )
        right = f"SELECT {by}, {arrays} FROM ({inner}) GROUP BY {by}"
        names = [*names, *(self.elements(c) for c in columns)]
        return (
            f"SELECT {self.list(names)} FROM ({left}) AS `_cdc_left` "
            f"ANY LEFT JOIN ({right}) AS `_cdc_right` USING ({by})",
            names,
        )

    def joined(self) -> tuple[str, list[str]]:
        """Rows with their partition's state and their elements, and their names."""
        layout = self.layout
        names = [*self.keys, "`_cdc_m`", "`_cdc_d`", *(self.cell(c) for c in layout.regular)]
        source = self.rows()
        if layout.has_clustering:
            right, added = self.partition()
            added = added[len(self.pk) :]
            source = (
                f"SELECT {self.list([*names, *added])} FROM ({source}) AS `_cdc_left` "
                f"ANY LEFT JOIN ({right}) AS `_cdc_right` USING ({self.list(self.pk)})"
            )
            names += added
        multicell = [c for c in layout.regular if c.elements is not None]
        if multicell:
            source, names = self.join(source, names, multicell, self.keys)
        return source, names

    # ------------------------------------------------------------------ expressions

    def floor(self) -> str:
        if not self.layout.has_clustering:
            return "`_cdc_d`"
        clustering = f"tuple({self.list(list(self.layout.clustering_names))})"
        ranges = (
            f"arrayReduce('max', arrayMap((_cdc_lr, _cdc_lc) -> if({self.covers()}, "
            f"tupleElement(_cdc_lr, 7), ''), `_cdc_pr`, replicate({clustering}, `_cdc_pr`)))"
        )
        return f"arrayReduce('max', [`_cdc_d`, `_cdc_pd`, {ranges}])"

    def covers(self) -> str:
        """SQL: clustering values ``_cdc_lc`` lie inside range tombstone ``_cdc_lr``."""
        return f"({self.bound(1, after=True)} AND {self.bound(4, after=False)})"

    def bound(self, at: int, *, after: bool) -> str:
        length, inclusive = f"tupleElement(_cdc_lr, {at})", f"tupleElement(_cdc_lr, {at + 1})"
        clustering = self.layout.clustering_key
        parts = [f"{length} = 0, 1"]
        for i, (name, codec) in enumerate(clustering, start=1):
            mine = f"tupleElement(_cdc_lc, {i})"
            theirs = f"tupleElement(tupleElement(_cdc_lr, {at + 2}), {i})"
            if codec.sql == "UUID":
                # ClickHouse orders UUIDs by their halves; the mirror by their bytes,
                # which their text's order is.
                mine, theirs = f"toString({mine})", f"toString({theirs})"
            operator = "<" if (name in self.layout.descending) == after else ">"
            parts.append(f"{mine} != {theirs}, {mine} {operator} {theirs}")
            if i < len(clustering):
                parts.append(f"{length} = {i}, {inclusive}")
        return f"multiIf({', '.join(parts)}, {inclusive})"

    def judged(self, column: Column, floor: str) -> tuple[list[str], str]:
        """A column's liveness and value part (and its live elements) under ``floor``,
        as named expressions of the level that filters rows, and its liveness."""
        i = self.index[column.name]
        cell = self.cell(column)
        live = f"`_cdc_v{i}`"
        named = [
            f"{live_sql(cell, floor, '`_cdc_now`')} AS {live}",
            f"if({live}, {rest_sql(cell)}, {column.cells.idle}) AS `_cdc_r{i}`",
        ]
        if column.elements is None:
            return named, live
        arrays, cutoff, elements = self.elements(column), f"`_cdc_u{i}`", f"`_cdc_l{i}`"
        cleared = (
            f"arrayReduce('max', arrayMap(_cdc_lx -> if(tupleElement(_cdc_lx, 1) = '', "
            f"substring(tupleElement(_cdc_lx, 2), 1, 16), ''), {arrays}))"
        )
        element_live = live_sql("tupleElement(_cdc_lx, 2)", "_cdc_lu", NOW)
        named += [
            f"if({cleared} > {floor}, {cleared}, {floor}) AS {cutoff}",
            f"arrayFilter((_cdc_lx, _cdc_lu) -> {element_live}, {arrays}, "
            f"replicate({cutoff}, {arrays})) AS {elements}",
        ]
        return named, f"({live} OR notEmpty({elements}))"

    def shown(self, column: Column) -> str:
        """A column's value in the view, from the names :meth:`judged` gave."""
        i = self.index[column.name]
        value = column.cells.shown(f"`_cdc_r{i}`", f"`_cdc_v{i}`")
        if column.elements is None:
            return value
        elements = f"`_cdc_l{i}`"
        fragments = (
            "arrayStringConcat(arrayMap(_cdc_lx -> substring(tupleElement(_cdc_lx, 2), "
            "position(tupleElement(_cdc_lx, 2), ' ') + 1), "
            f"arraySort(_cdc_lx -> tupleElement(_cdc_lx, 1), {elements})), ',')"
        )
        return f"if(notEmpty({elements}), {column.elements.build(fragments)}, {value})"

    def select(self) -> str:
        """Levels that each compute their expressions once (18.16 expands an alias
        wherever it is used, and a query's analysis grows with the expansion and with
        the levels): the joined states; the floor, when ranges and partitions make it
        worth a level; each cell's liveness, value part and live elements, keeping
        visible rows; each column's value."""
        layout = self.layout
        source, names = self.joined()
        named: list[str] = [f"{NOW} AS `_cdc_now`"]
        floored = source
        if layout.has_clustering:  # a floor worth computing once; else the row's own
            floored = f"SELECT {self.list(names)}, {self.floor()} AS `_cdc_f` FROM ({source})"
        else:
            named.append("`_cdc_d` AS `_cdc_f`")
        visible = [live_sql("`_cdc_m`", "`_cdc_f`", "`_cdc_now`")]
        static_visible: list[str] = []
        for column in layout.columns:
            expressions, live = self.judged(column, "`_cdc_pd`" if column.static else "`_cdc_f`")
            named += expressions
            if column.live:
                (static_visible if column.static else visible).append(live)
        rows = (
            f"SELECT {self.list(self.keys)}, {', '.join(named)} FROM ({floored}) "
            f"WHERE {' OR '.join(visible)}"
        )
        outputs = [f"{self.shown(c)} AS {_q(c.name)}" for c in layout.columns]
        projected = f"SELECT {self.list(self.keys)}, {', '.join(outputs)} FROM ({rows})"
        if not static_visible:
            return projected
        listed = self.list([*self.keys, *(c.name for c in layout.columns)])
        statics = self.static_only(rows, static_visible)
        return f"{projected} UNION ALL SELECT {listed} FROM ({statics})"

    def static_only(self, rows: str, static_visible: list[str]) -> str:
        """Partitions with live static cells and no visible row: one row each, its
        clustering values null."""
        layout = self.layout
        # Whether a partition has a visible row, as a GROUP BY over every partition so
        # that a condition on the partition key reaches the tables (a NOT IN subquery
        # would be computed whole).
        pk = self.list(self.pk)
        partition, names = self.partition()
        seen = (
            f"SELECT {pk}, max(`_cdc_vis`) AS `_cdc_any` FROM ("
            f"SELECT {pk}, toUInt8(1) AS `_cdc_vis` FROM ({rows}) UNION ALL "
            f"SELECT {pk}, toUInt8(0) AS `_cdc_vis` FROM {layout.partition} GROUP BY {pk}"
            f") GROUP BY {pk}"
        )
        names = [*names, "`_cdc_any`"]
        source = (
            f"SELECT {self.list(names)}, {NOW} AS `_cdc_now` FROM ({seen}) AS `_cdc_left` "
            f"ANY LEFT JOIN ({partition}) AS `_cdc_right` USING ({pk})"
        )
        named: list[str] = []
        for column in layout.statics:
            expressions, _ = self.judged(column, "`_cdc_pd`")
            named += expressions
        judged = (
            f"SELECT {pk}, {', '.join(named)} FROM ({source}) "
            f"WHERE `_cdc_any` = 0 AND ({' OR '.join(static_visible)})"
        )
        outputs = [_q(n) for n in self.pk]
        outputs += [f"{null_sql(c.sql)} AS {_q(n)}" for n, c in layout.clustering_key]
        for column in layout.columns:
            value = (
                self.shown(column) if column.static else column.cells.shown(column.cells.idle, "0")
            )
            outputs.append(f"{value} AS {_q(column.name)}")
        return f"SELECT {', '.join(outputs)} FROM ({judged})"

    # ------------------------------------------------------------------ names

    def cell(self, column: Column) -> str:
        return f"`_cdc_s{self.index[column.name]}`"

    def elements(self, column: Column) -> str:
        return f"`_cdc_e{self.index[column.name]}`"

    def list(self, names: list[str]) -> str:
        return ", ".join(_q(n) for n in names)
