"""Tables written by the previous design (ADR 0006) are refused until converted, and
``cdc-app clickhouse migrate`` converts them: the current-state view then shows what
the old ``FINAL`` query showed, and writing goes on in the new layout."""

from __future__ import annotations

import io
import json

import pytest
from dependency_injector import providers

from cdc_adapters.clickhouse import ClickHouseClient
from cdc_adapters.memory import MemorySchemaSource
from cdc_app.clickhouse_cli import migrate
from cdc_app.container import Container
from cdc_domain.errors import TableError
from cdc_domain.events import Operation, SourcePosition
from tests.contract.sink_contract import HISTORY, SCHEMA, batch, expected_rows
from tests.factories import event, table
from tests.unit.app.wiring import memory_settings

NEVER = -(2**63)
WIDE = table(
    "readings",
    keyspace="contract",
    partition={"id": "int"},
    clustering={"n": "int"},
    regular={"v": "text", "tags": "set<text>"},
    static={"owner": "text"},
)


def _row(l=NEVER, d=NEVER, s=None, x=None):  # noqa: E741 - the old state's own keys
    return {"l": l, "d": d, "o": [0, "UPDATE"], "s": s or {}, "x": x or {}}


# What the old sink left for HISTORY: one current version per key (older cells dropped
# under tombstones, as it compacted them).
ORDERS_STATES = [
    ((1,), _row(l=10, s={"status": [20, False, "paid"], "total": [18, False, 6]})),
    ((2,), _row(d=30)),
    ((3,), _row(s={"total": [26, True, None]})),
]
WIDE_ROWS = [
    ((1,), (1,), _row(l=10, s={"v": [10, False, "a"]},
                      x={"tags": ["set", 15, [["w", 16, False, None], ["x", 17, True, None]]]})),
    ((1,), (2,), _row()),  # hidden for good by the range tombstone: compacted away
    ((2,), (2,), _row(l=30, s={"v": [30, False, "after"]})),
]  # fmt: skip
WIDE_PARTITIONS = [
    ((1,), {"d": NEVER, "r": [[[[{"n": 2}, True], [{"n": 5}, True]], 14]],
            "st": _row(s={"owner": [12, False, "ann"]})}),
    ((2,), {"d": 25, "r": [], "st": _row()}),
]  # fmt: skip
WIDE_EXPECTED = {
    ((1,), (1,)): {"v": "a", "tags": frozenset({"w"}), "owner": "ann"},
    ((2,), (2,)): {"v": "after"},
}


async def _old_layout(url: str, database: str) -> None:
    """The old tables, as the old sink created and filled them."""
    client = ClickHouseClient(url)
    meta = (
        "`_cdc_version` UInt64, `_cdc_is_deleted` UInt8, "
        "`_cdc_op` Enum8('INSERT' = 1, 'UPDATE' = 2, 'DELETE' = 3), `_cdc_state` String"
    )
    engine = "ENGINE = ReplacingMergeTree(`_cdc_version`)"
    try:
        await client.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        await client.execute(
            f"CREATE TABLE `{database}`.orders (id Int32, status Nullable(String), "
            f"total Nullable(Int32), {meta}) {engine} ORDER BY id"
        )
        await client.execute(
            f"CREATE VIEW `{database}`.orders__current AS SELECT * FROM `{database}`.orders"
        )
        lines = [
            f"{k[0]}\t1\t0\tUPDATE\t{_text({'k': [list(k), []], 'r': r})}\n"
            for k, r in ORDERS_STATES
        ]
        columns = "_cdc_version, _cdc_is_deleted, _cdc_op, _cdc_state"
        await client.insert(f"`{database}`.orders (id, {columns})", "".join(lines).encode())
        await client.execute(
            f"CREATE TABLE `{database}`.readings (id Int32, n Int32, v Nullable(String), "
            f"tags Array(String), owner Nullable(String), {meta}) {engine} ORDER BY (id, n)"
        )
        await client.execute(
            f"CREATE TABLE `{database}`.readings__cdc_partitions (id Int32, "
            f"`_cdc_version` UInt64, `_cdc_state` String) {engine} ORDER BY id"
        )
        lines = [
            f"{p[0]}\t{c[0]}\t1\t0\tUPDATE\t{_text({'k': [list(p), list(c)], 'r': r})}\n"
            for p, c, r in WIDE_ROWS
        ]
        await client.insert(f"`{database}`.readings (id, n, {columns})", "".join(lines).encode())
        lines = [f"{p[0]}\t1\t{_text({'k': list(p), 'p': s})}\n" for p, s in WIDE_PARTITIONS]
        await client.insert(
            f"`{database}`.readings__cdc_partitions (id, _cdc_version, _cdc_state)",
            "".join(lines).encode(),
        )
    finally:
        await client.aclose()


def _text(state) -> str:
    return json.dumps(state).replace("\\", "\\\\")


async def test_an_old_table_is_refused_until_migrated_then_reads_the_same(make_sink, server_url):
    sink, read_back = await make_sink()
    database = sink.database_for("contract")
    await _old_layout(server_url, database)
    with pytest.raises(TableError) as refused:
        await sink.write(batch(HISTORY[:1]))
    assert refused.value.table == "contract.orders"
    assert "cdc-app clickhouse migrate" in str(refused.value)

    assert await sink.migrate(SCHEMA) == 3
    assert await read_back() == expected_rows(HISTORY)
    assert await sink.migrate(WIDE) == 5
    assert await read_back(WIDE) == WIDE_EXPECTED

    # Converting again is harmless, and writing goes on in the new layout.
    assert await sink.migrate(SCHEMA) == 3
    late = event(Operation.UPDATE, keyspace="contract", key=1, ts=40, columns={"total": 1},
                 position=SourcePosition(9, 1))  # fmt: skip
    await sink.write(batch((late,)))
    assert await read_back() == expected_rows((*HISTORY, late))


async def test_the_command_converts_every_table_of_a_destination(make_sink, server_url):
    sink, read_back = await make_sink()
    prefix = sink.database_for("")
    await _old_layout(server_url, prefix + "contract")
    settings = memory_settings(
        destinations=[{"name": "ch", "type": "clickhouse", "database_prefix": prefix}],
        clickhouse={"url": server_url},
    )
    container = Container(settings=settings)
    container.schemas.override(providers.Object(MemorySchemaSource([SCHEMA, WIDE])))
    out, err = io.StringIO(), io.StringIO()
    assert await migrate(container, out, err, destination="ch", tables=[]) == 0
    assert out.getvalue().splitlines() == [
        "contract.orders: converted 3 states",
        "contract.readings: converted 5 states",
    ]
    assert await read_back() == expected_rows(HISTORY)
    assert await read_back(WIDE) == WIDE_EXPECTED
    assert await migrate(container, out, err, destination="nowhere", tables=[]) == 2
