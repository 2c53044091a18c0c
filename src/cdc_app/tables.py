"""Plain-text tables for the operator commands: aligned columns, nothing to install."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["render_table"]


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``rows`` under ``headers``, each column as wide as its widest cell; None is "-"."""
    cells = [list(headers), *([_cell(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "".join(line.rstrip() + "\n" for line in lines)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)
