"""ClickHouse sink throughput against batch-sized raw inserts of the same events.

    .venv/bin/python bench/sinks_clickhouse.py [--events 1000000] [--runs 3]
        [--batch-sizes 1000 10000] [--url URL | --chdb]

A stream of change events on a 10-column table (80% partial updates of 3 columns of
existing keys, 10% inserts of new keys, 10% row deletes; write timestamps mostly
increasing) goes through ``ClickHouseSink`` in batches. Beside it, in the same run and
over the same client (``ClickHouseClient.insert``), the same events as raw TabSeparated
rows, one row per event (the key, the ten typed columns, ``\\N`` where the event does
not touch one), in INSERTs of the batch size into a plain ``MergeTree``: the reference
(its bodies are rendered before the clock starts, so it is the server's and the
client's sending cost only). Each run uses fresh tables; each ratio is sink events/s
over raw rows/s of the same run; the figures are medians of ``--runs`` runs.

Also printed: the sink's client CPU per event (``process_time`` over its writes: the
encoding and the HTTP client), request bytes per event (sink and raw), the process's
peak RSS after the sink runs (events are generated per batch, so it is bounded by a
batch), and the read cost of the current-state view (a full scan, and 1,000 point
lookups by key) against the ``SELECT ... FINAL WHERE _cdc_is_deleted = 0`` of the
previous design (ADR 0006) over a ReplacingMergeTree holding what that sink wrote for
the same stream: one full row version per changed key and batch, with its
``_cdc_state``. The last line is the summary: the smallest per-batch-size median ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cdc_adapters.clickhouse import ClickHouseClient, ClickHouseSink
from cdc_adapters.clickhouse.column_types import column_codec
from cdc_domain.events import ChangeEvent, DeletionScope, Operation, SourcePosition
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import SinkBatch
from tests.factories import table

COLUMNS = {
    "name": "text", "email": "text", "city": "text", "status": "text", "age": "int",
    "visits": "bigint", "score": "double", "active": "boolean", "seen": "timestamp",
    "ref": "uuid",
}  # fmt: skip
SCHEMA = table("users", keyspace="bench", regular=COLUMNS)
CAPTURED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LOOKUPS = 1000


def _values(rng: random.Random, names: list[str]) -> dict[str, object]:
    makers = {
        "name": lambda: f"user {rng.randrange(10**6)}",
        "email": lambda: f"u{rng.randrange(10**6)}@example.com",
        "city": lambda: rng.choice(["Oslo", "Lyon", "Kyoto", "Lima"]),
        "status": lambda: rng.choice(["new", "active", "gone"]),
        "age": lambda: rng.randrange(100),
        "visits": lambda: rng.randrange(10**9),
        "score": lambda: rng.random(),
        "active": lambda: rng.random() < 0.5,
        "seen": lambda: CAPTURED + dt.timedelta(seconds=rng.randrange(10**7)),
        "ref": lambda: uuid.UUID(int=rng.getrandbits(128)),
    }
    return {n: makers[n]() for n in names}


def batches(total: int, size: int, seed: int = 7) -> Iterator[tuple[ChangeEvent, ...]]:
    rng = random.Random(seed)
    names = list(COLUMNS)
    keys = 1000  # keys 0..999 exist before the stream (written by its first inserts)
    for start in range(0, total, size):
        events = []
        for i in range(start, min(start + size, total)):
            roll = rng.random()
            if i < 1000 or roll < 0.1:
                key, op, kwargs = (i if i < 1000 else keys), Operation.INSERT, {}
                keys += i >= 1000
                kwargs["columns"] = _values(rng, names)
            elif roll < 0.2:
                key, op = rng.randrange(keys), Operation.DELETE
                kwargs = {"scope": DeletionScope.ROW}
            else:
                key, op = rng.randrange(keys), Operation.UPDATE
                kwargs = {"columns": _values(rng, rng.sample(names, 3))}
            events.append(
                ChangeEvent.create(
                    operation=op,
                    keyspace="bench",
                    table="users",
                    partition_key={"id": key},
                    timestamp_micros=1_000_000 + i * 10 - rng.randrange(5),
                    captured_at=CAPTURED,
                    position=SourcePosition(1, i),
                    **kwargs,
                )
            )
        yield tuple(events)


class Counting(ClickHouseClient):
    """The sink's client, counting the bytes of the bodies it sends."""

    sent = 0

    async def insert(self, into: str, body: bytes) -> None:
        Counting.sent += len(body)
        await super().insert(into, body)


async def run(url: str, events: int, size: int, prefix: str) -> dict[str, float]:
    """The sink and the raw inserts, batch by batch in turn, so that both meet the
    same server load; only their writes are timed."""
    database = prefix + "bench"
    sink = ClickHouseSink(url=url, database_prefix=prefix)
    sink._client = sink._objects._client = Counting(url)  # counting only
    Counting.sent = 0
    client = ClickHouseClient(url)
    features = await client.features()
    codecs = {c.name: column_codec(c.type, features, key=c.is_primary_key) for c in SCHEMA.columns}
    ddl = ", ".join(f"`{n}` {c.sql}" for n, c in codecs.items())  # type: ignore[union-attr]
    raw = f"`{database}`.`raw`"
    await client.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    await client.execute(f"CREATE TABLE {raw} ({ddl}) ENGINE = MergeTree ORDER BY id")
    names = list(codecs)
    sink_wall = sink_cpu = raw_wall = rendering = 0.0
    raw_sent = 0
    for chunk in batches(events, size):
        batch = SinkBatch(
            chunk, {SCHEMA.qualified_name: SCHEMA}, Checkpoint("n", chunk[-1].position, len(chunk))
        )
        started, started_cpu = time.perf_counter(), time.process_time()
        await sink.write(batch)
        sink_wall += time.perf_counter() - started
        sink_cpu += time.process_time() - started_cpu
        started = time.perf_counter()
        lines = []
        for event in chunk:
            values = {**event.partition_key, **event.columns}
            fields = [codecs[n].encode(values.get(n)) for n in names]  # type: ignore[union-attr]
            lines.append("\t".join(fields) + "\n")
        body = "".join(lines).encode()
        rendering += time.perf_counter() - started
        raw_sent += len(body)
        started = time.perf_counter()
        await client.insert(raw, body)
        raw_wall += time.perf_counter() - started
    await sink.aclose()
    await client.aclose()
    return {
        "sink": events / sink_wall,
        "raw": events / raw_wall,
        "rendered": events / (raw_wall + rendering),
        "cpu_us": sink_cpu / events * 1e6,
        "sink_bytes": Counting.sent / events,
        "raw_bytes": raw_sent / events,
    }


async def old_layout(url: str, database: str, events: int, size: int) -> str:
    """What the previous sink (ADR 0006) left for this stream: per batch, one version of
    each changed key (its full row, its version, deleted flag, its ``_cdc_state``), in
    one INSERT into a ReplacingMergeTree, as it wrote them. Returns the table."""
    client = ClickHouseClient(url)
    features = await client.features()
    codecs = {c.name: column_codec(c.type, features, key=c.is_primary_key) for c in SCHEMA.columns}
    ddl = ", ".join(f"`{n}` {c.sql}" for n, c in codecs.items())  # type: ignore[union-attr]
    target = f"`{database}`.`old`"
    await client.execute(
        f"CREATE TABLE {target} ({ddl}, `_cdc_version` UInt64, `_cdc_is_deleted` UInt8, "
        "`_cdc_state` String) ENGINE = ReplacingMergeTree(`_cdc_version`) ORDER BY id"
    )
    state: dict[int, dict[str, tuple[int, Any]]] = {}
    deleted: dict[int, int] = {}
    names = list(COLUMNS)
    for chunk in batches(events, size):
        touched = set()
        for event in chunk:
            key, ts = event.partition_key["id"], event.timestamp_micros
            touched.add(key)
            if event.scope is DeletionScope.ROW:
                deleted[key] = max(deleted.get(key, 0), ts)
                continue
            cells = state.setdefault(key, {})
            for name, value in event.columns.items():
                if name not in cells or cells[name][0] < ts:
                    cells[name] = (ts, value)
        lines = []
        for key in touched:
            floor = deleted.get(key, 0)
            cells = {n: c for n, c in state.get(key, {}).items() if c[0] > floor}
            version = max([floor, *(c[0] for c in state.get(key, {}).values())])
            row = [codecs["id"].encode(key)]  # type: ignore[union-attr]
            row += [codecs[n].encode(cells[n][1] if n in cells else None) for n in names]  # type: ignore[union-attr]
            text = json.dumps({n: [c[0], False, str(c[1])] for n, c in cells.items()})
            row += [str(version), "0" if cells else "1", text.replace("\\", "\\\\")]
            lines.append("\t".join(row) + "\n")
        await client.insert(target, "".join(lines).encode())
    await client.aclose()
    return target


async def timed(url: str, queries: list[str], repeat: int = 3) -> float:
    """Median seconds of running every query once, in sequence (results discarded by
    the server: ``FORMAT Null``)."""
    times = []
    async with aiohttp.ClientSession() as http:
        for _ in range(repeat):
            started = time.perf_counter()
            for sql in queries:
                async with http.post(url, data=f"{sql} FORMAT Null".encode()) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(body.decode(errors="replace"))
            times.append(time.perf_counter() - started)
    return statistics.median(times)


async def reads(url: str, database: str, events: int, size: int) -> dict[str, float]:
    old = await old_layout(url, database, events, size)
    client = ClickHouseClient(url)
    view = f"`{database}`.`users`"
    keys = [int(k) for (k,) in await client.select(f"SELECT id FROM {view}")]
    sample = random.Random(1).sample(keys, min(LOOKUPS, len(keys)))
    columns = ", ".join(f"`{n}`" for n in ["id", *COLUMNS])
    old_where = "`_cdc_is_deleted` = 0"
    # 18.16 pushes a WHERE into a view's subqueries only when asked to.
    push = " SETTINGS enable_optimize_predicate_expression = 1"
    figures = {
        "rows": len(keys),
        "scan_view": await timed(url, [f"SELECT {columns} FROM {view}"]),
        "scan_old": await timed(url, [f"SELECT {columns} FROM {old} FINAL WHERE {old_where}"]),
        "points_view": await timed(
            url, [f"SELECT {columns} FROM {view} WHERE id = {k}{push}" for k in sample], 1
        ),
        "points_old": await timed(
            url,
            [f"SELECT {columns} FROM {old} FINAL WHERE id = {k} AND {old_where}" for k in sample],
            1,
        ),
    }
    await client.aclose()
    return figures


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def main(args: argparse.Namespace) -> None:
    url = args.url
    server = None
    if args.chdb:
        from tests.support.chdb_http import ChdbHttpServer

        server = ChdbHttpServer(tempfile.mkdtemp(prefix="bench-chdb-"))
        url = (await server.__aenter__()).url
    client = ClickHouseClient(url)
    version = (await client.select("SELECT version()"))[0][0]
    print(f"ClickHouse {version} at {url}; {args.events:,} events, 10 columns, "
          f"{args.runs} runs; load average {load()}")  # fmt: skip
    tag = f"bench_{os.getpid()}"
    summary = []
    last: tuple[str, int] | None = None
    try:
        for size in args.batch_sizes:
            results = []
            for attempt in range(args.runs):
                prefix = f"{tag}_{size}_{attempt}_"
                database = prefix + "bench"
                result = await run(url, args.events, size, prefix)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                results.append(result)
                print(
                    f"  batch {size:>6,} run {attempt + 1}: sink {result['sink']:>9,.0f} "
                    f"events/s, raw {result['raw']:>9,.0f} rows/s, ratio "
                    f"{result['sink'] / result['raw']:6.1%}; sink CPU {result['cpu_us']:4.1f} "
                    f"us/event; bytes/event sink {result['sink_bytes']:.0f} raw "
                    f"{result['raw_bytes']:.0f}; peak RSS {rss:,.0f} MiB; load {load()}; "
                    f"raw with its rendering {result['rendered']:,.0f} rows/s"
                )
                if last is not None:
                    await client.execute(f"DROP DATABASE IF EXISTS `{last[0]}`")
                last = (database, size)
            ratio = statistics.median(r["sink"] / r["raw"] for r in results)
            summary.append(ratio)
            print(
                f"batch {size:>6,}: median of {args.runs}: sink "
                f"{statistics.median(r['sink'] for r in results):,.0f} events/s, raw "
                f"{statistics.median(r['raw'] for r in results):,.0f} rows/s, ratio {ratio:.1%}; "
                f"sink CPU {statistics.median(r['cpu_us'] for r in results):.1f} us/event"
            )
        if args.reads and last is not None:
            figures = await reads(url, last[0], args.events, last[1])
            print(
                f"reads (batch {last[1]:,} run) over {figures['rows']:,.0f} live rows: full scan "
                f"view {figures['scan_view']:.3f} s vs old FINAL {figures['scan_old']:.3f} s; "
                f"{LOOKUPS:,} point lookups view {figures['points_view']:.2f} s vs old FINAL "
                f"{figures['points_old']:.2f} s; load {load()}"
            )
    finally:
        if last is not None:
            await client.execute(f"DROP DATABASE IF EXISTS `{last[0]}`")
        await client.aclose()
        if server is not None:
            await server.__aexit__(None, None, None)
    print(f"clickhouse: {min(summary):.1%} of batch-sized raw inserts")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--no-reads", dest="reads", action="store_false")
    parser.add_argument(
        "--url", default=os.environ.get("CDC_TEST_CLICKHOUSE_URL", "http://127.0.0.1:58123/")
    )
    parser.add_argument("--chdb", action="store_true", help="use an in-process chdb instead")
    asyncio.run(main(parser.parse_args()))
