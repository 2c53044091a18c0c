"""Deleting what has been dead for long: this mirror's ``gc_grace_seconds``.

Tombstones and expired cells must stay while a replay could still bring older writes
they hide; after ``purge_expired_after`` seconds the sink deletes them, as Cassandra's
compaction does after ``gc_grace_seconds``. Only whole states are judged: a row is
deleted when its merged state (all parts of its key) holds nothing but tombstones,
cells its own row tombstone hides, and expired cells, every one written (and expired)
before the cutoff, and none of its collection elements is left; an element when its
merged state is such a cell. Rows a partition or range tombstone hides, the partition
table and the collections' deletion marks stay.

Deleting parts of a key one at a time could briefly expose what another part hides, so
the keys are first chosen from the merged states into a ``Memory`` table, and the mutation
then deletes only the rows of those keys written before the cutoff: a write landing
meanwhile survives, and it is newer than all it meets.
"""

from __future__ import annotations

import time

from cdc_adapters.clickhouse.cells import TS_OFFSET
from cdc_adapters.clickhouse.client import ClickHouseClient
from cdc_adapters.clickhouse.sql import qualified, quote_identifier, quote_string
from cdc_adapters.clickhouse.tables import TableLayout

__all__ = ["purge_expired"]


async def purge_expired(client: ClickHouseClient, layout: TableLayout, after: float) -> None:
    """Delete the rows and elements of ``layout`` dead for more than ``after`` seconds;
    skipped while the previous purge's deletions are still running."""
    database = layout.database
    tables = [f"{layout.name}__cdc_rows"]
    if layout.has_elements:
        tables.append(f"{layout.name}__cdc_elements")
    listed = ", ".join(quote_string(t) for t in tables)
    pending = await client.select(
        f"SELECT count() FROM system.mutations WHERE database = {quote_string(database)} "
        f"AND table IN ({listed}) AND is_done = 0"
    )
    if pending and pending[0][0] != "0":
        return
    cutoff = time.time() - after
    stamp = f"'{int(cutoff * 1_000_000) + TS_OFFSET:016x}'"
    expiry = f"'{int(cutoff) + 10**11:012d}'"
    keys = ", ".join(quote_identifier(n) for n, _ in layout.keys)
    if layout.has_elements:
        element_keys = f"{keys}, `_cdc_column`, `_cdc_element`"
        dead = _dead("finalizeAggregation(`_cdc_cell`)", "''", stamp, expiry)
        await _delete(
            client,
            layout.elements,
            qualified(database, f"{layout.name}__cdc_purge_elements"),
            element_keys,
            f"SELECT {element_keys} FROM {layout.elements} FINAL "
            f"WHERE `_cdc_element` != '' AND {dead}",
            f"finalizeAggregation(`_cdc_cell`) < {stamp}",
        )
    states = ["_cdc_marker", "_cdc_deleted", *(c.name for c in layout.regular)]
    merged = ", ".join(
        f"finalizeAggregation({quote_identifier(n)}) AS `_cdc_p{i}`" for i, n in enumerate(states)
    )
    floor = "`_cdc_p1`"
    conditions = [f"{floor} < {stamp}"] + [
        _dead(f"`_cdc_p{i}`", floor, stamp, expiry) for i in range(len(states)) if i != 1
    ]
    choose = (
        f"SELECT {keys} FROM (SELECT {keys}, {merged} FROM {layout.rows} FINAL) "
        f"WHERE {' AND '.join(conditions)}"
    )
    if layout.has_elements:
        choose += f" AND ({keys}) NOT IN (SELECT {keys} FROM {layout.elements})"
    written_before = " AND ".join(
        f"finalizeAggregation({quote_identifier(n)}) < {stamp}" for n in states
    )
    await _delete(
        client,
        layout.rows,
        qualified(database, f"{layout.name}__cdc_purge_rows"),
        keys,
        choose,
        written_before,
    )


def _dead(cell: str, floor: str, stamp: str, expiry: str) -> str:
    kind = f"substring({cell}, 17, 1)"
    written = f"substring({cell}, 1, 16)"
    gone = (
        f"{kind} = '2' OR {written} <= {floor} "
        f"OR ({kind} = '1' AND substring({cell}, 18, 12) < {expiry})"
    )
    return f"({cell} = '' OR ({written} < {stamp} AND ({gone})))"


async def _delete(
    client: ClickHouseClient,
    table: str,
    chosen: str,
    keys: str,
    choose: str,
    written_before: str,
) -> None:
    await client.execute(f"DROP TABLE IF EXISTS {chosen}")
    await client.execute(f"CREATE TABLE {chosen} ENGINE = Memory AS {choose}")
    await client.execute(
        f"ALTER TABLE {table} DELETE WHERE ({keys}) IN {chosen} AND {written_before}"
    )
