"""Token ranges of a Cassandra ring, as the snapshot reads a table: by range.

A partitioner maps every partition key to a token; the ring's tokens split the token
space into ranges, each owned by one node (its *primary replica*). The snapshot reads a
table range by range, so the work splits across agents (each reads the ranges its node
owns) and into pieces small enough to run in parallel and to resume after a crash.

Tokens are plain integers here. A range is ``(start, end]``: start excluded, end
included, as CQL's ``token(pk) > start AND token(pk) <= end`` selects it; a range never
wraps (the source splits the ring's wrapping range at the ends of the token space).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import attrs

__all__ = ["RingRange", "TokenRange", "TokenRangeError", "split_ring"]

_BOUNDS = re.compile(r"^\s*\(?\s*(-?\d+)\s*[:,]\s*(-?\d+)\s*\]?\s*$")


class TokenRangeError(ValueError):
    """A token range that is not ``start:end`` with start below end."""


@attrs.frozen(slots=True, order=True)
class TokenRange:
    """Tokens above ``start`` and up to ``end``."""

    start: int
    end: int

    def __attrs_post_init__(self) -> None:
        if self.start >= self.end:
            raise TokenRangeError(f"a token range needs start < end, got {self}")

    @classmethod
    def parse(cls, text: str) -> TokenRange:
        """``A:B`` (or ``(A,B]``), as ``cdc-app snapshot --token-range`` takes it."""
        found = _BOUNDS.match(text)
        if found is None:
            raise TokenRangeError(f"{text!r} is not a token range START:END")
        return cls(int(found.group(1)), int(found.group(2)))

    @property
    def width(self) -> int:
        return self.end - self.start

    def split(self, pieces: int) -> list[TokenRange]:
        """``pieces`` adjacent ranges covering this one (fewer when it is narrower)."""
        pieces = max(1, min(pieces, self.width))
        bounds = [self.start + self.width * i // pieces for i in range(pieces + 1)]
        return [TokenRange(a, b) for a, b in itertools.pairwise(bounds)]

    def intersection(self, other: TokenRange) -> TokenRange | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return TokenRange(start, end) if start < end else None

    def __str__(self) -> str:
        return f"{self.start}:{self.end}"


@attrs.frozen(slots=True)
class RingRange:
    """One range of the ring and whether this agent's node is its primary replica."""

    range: TokenRange
    primary: bool


def split_ring(
    ring: Iterable[RingRange],
    pieces: int,
    *,
    all_ranges: bool = False,
    within: TokenRange | None = None,
) -> list[TokenRange]:
    """The ranges to read: each ring range this agent owns (every one with
    ``all_ranges``) in ``pieces``, clipped to ``within`` when given, in token order.
    The same ring and ``pieces`` always give the same ranges: a resumed snapshot finds
    the ranges it finished by their bounds."""
    ranges: list[TokenRange] = []
    for owned in sorted(ring, key=lambda r: r.range):
        if not (owned.primary or all_ranges):
            continue
        for piece in owned.range.split(pieces):
            clipped = piece if within is None else piece.intersection(within)
            if clipped is not None:
                ranges.append(clipped)
    return ranges
