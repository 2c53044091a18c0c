from __future__ import annotations

import builtins
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence

from cdc_domain.errors import TransientError
from cdc_domain.schema import TableSchema
from cdc_domain.snapshot_rows import SnapshotRow
from cdc_domain.tokens import RingRange, TokenRange

MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1


def even_ring(ranges: int) -> list[RingRange]:
    """A one-node ring of ``ranges`` equal ranges, all this node's."""
    return [RingRange(r, True) for r in TokenRange(MIN_TOKEN, MAX_TOKEN).split(ranges)]


class MemorySnapshotSource:
    """Rows the test puts, read back by token range as a node would serve them.

    A row's token is a hash of its partition key; ``ring`` says which ranges this node
    owns. ``fail`` makes the next reads of a range fail (transient, as a timeout), each
    failing after ``fail_after`` pages. ``reads`` records every range read, in order.
    """

    def __init__(self, ring: Sequence[RingRange] | None = None, page_rows: int = 100) -> None:
        self._ring = list(ring) if ring is not None else even_ring(4)
        self._page_rows = page_rows
        self._rows: dict[str, list[SnapshotRow]] = {}
        self.estimates: dict[str, int] = {}
        self.fail: dict[TokenRange, int] = {}
        self.fail_after = 0
        self.reads: list[tuple[str, TokenRange]] = []
        self.closed = False

    def put(self, table: str, rows: Iterable[SnapshotRow]) -> None:
        """Add rows of ``keyspace.table`` (a partition's static row before its rows)."""
        self._rows.setdefault(table, []).extend(rows)

    @staticmethod
    def token(row: SnapshotRow) -> int:
        digest = hashlib.sha256(repr(tuple(row.partition_key.values())).encode()).digest()
        token = int.from_bytes(digest[:8], "big", signed=True)
        return MAX_TOKEN if token == MIN_TOKEN else token

    async def ring(self, keyspace: str) -> builtins.list[RingRange]:
        return list(self._ring)

    async def estimate(self, keyspace: str, table: str) -> int | None:
        return self.estimates.get(f"{keyspace}.{table}")

    async def read(
        self, schema: TableSchema, token_range: TokenRange
    ) -> AsyncIterator[builtins.list[SnapshotRow]]:
        self.reads.append((schema.qualified_name, token_range))
        rows = sorted(
            (r for r in self._rows.get(schema.qualified_name, []) if _inside(r, token_range)),
            key=self.token,
        )
        failing = self.fail.get(token_range, 0) > 0
        for page, start in enumerate(range(0, len(rows), self._page_rows)):
            if failing and page >= self.fail_after:
                break
            yield rows[start : start + self._page_rows]
        if failing:
            self.fail[token_range] -= 1
            raise TransientError(f"reading {token_range} timed out")

    async def aclose(self) -> None:
        self.closed = True


def _inside(row: SnapshotRow, token_range: TokenRange) -> bool:
    return token_range.start < MemorySnapshotSource.token(row) <= token_range.end
