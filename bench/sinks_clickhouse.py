"""ClickHouse sink throughput against the server's own bulk-load rate (issue 5).

    .venv/bin/python bench/sinks_clickhouse.py [--events 1000000] [--url URL | --chdb]

A stream of change events on a 10-column table (80% partial updates of existing keys,
10% inserts of new keys, 10% row deletes; write timestamps mostly increasing) goes
through ``ClickHouseSink`` at batch sizes 1,000 and 10,000. Beside it, in the same run,
the final rows the sink produced are exported as TabSeparated and loaded into a plain
MergeTree table with one INSERT over HTTP: the raw rate the sink is measured against;
then once more in INSERTs of the batch size, as the sink must send them (a fixed cost per
INSERT dominates small ones). Events are generated per batch, so memory stays bounded by
the batch size plus the sink's state cache (``cached_rows``, 100,000 rows by default).
Peak RSS is the process's peak so far: run one batch size per process
(``--batch-sizes 10000``) for that size's own figure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cdc_adapters.clickhouse import ClickHouseClient, ClickHouseSink
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


async def run_sink(url: str, events: int, size: int, prefix: str) -> tuple[float, ClickHouseSink]:
    sink = ClickHouseSink(url=url, database_prefix=prefix)
    elapsed = 0.0
    for chunk in batches(events, size):
        batch = SinkBatch(
            chunk, {SCHEMA.qualified_name: SCHEMA}, Checkpoint("n", chunk[-1].position, len(chunk))
        )
        started = time.perf_counter()
        await sink.write(batch)
        elapsed += time.perf_counter() - started
    return elapsed, sink


async def post(http: aiohttp.ClientSession, url: str, sql: str, body: bytes = b"") -> bytes:
    params = {"query": sql} if body else None
    async with http.post(url, params=params, data=body or sql.encode()) as resp:
        data = await resp.read()
        if resp.status != 200:
            raise RuntimeError(data.decode(errors="replace"))
        return data


async def raw_insert(url: str, database: str, size: int) -> tuple[int, float, float]:
    """One INSERT of the sink's final rows, as TabSeparated, into a plain MergeTree; then
    the same rows again in INSERTs of ``size`` rows (the sink's request count per row)."""
    columns = ["id", *COLUMNS]
    listed = ", ".join(f"`{c}`" for c in columns)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as http:
        rows = await post(
            http, url,
            f"SELECT {listed} FROM `{database}`.`users` FINAL WHERE _cdc_is_deleted = 0 "
            "FORMAT TabSeparated",
        )  # fmt: skip
        types = await post(
            http, url, f"SELECT name, type FROM system.columns WHERE database = '{database}' "
            "AND table = 'users' FORMAT TabSeparated",
        )  # fmt: skip
        text = types.decode().replace("\\'", "'")  # TSV escapes the quotes in type names
        declared = dict(line.split("\t") for line in text.splitlines())
        ddl = ", ".join(f"`{c}` {declared[c]}" for c in columns)
        await post(
            http, url, f"CREATE TABLE `{database}`.`raw` ({ddl}) ENGINE = MergeTree ORDER BY id"
        )
        started = time.perf_counter()
        await post(http, url, f"INSERT INTO `{database}`.`raw` FORMAT TabSeparated", rows)
        elapsed = time.perf_counter() - started
        await post(http, url, f"CREATE TABLE `{database}`.`raw_batched` AS `{database}`.`raw`")
        lines = rows.splitlines(keepends=True)
        started = time.perf_counter()
        for i in range(0, len(lines), size):
            body = b"".join(lines[i : i + size])
            await post(
                http, url, f"INSERT INTO `{database}`.`raw_batched` FORMAT TabSeparated", body
            )
        batched = time.perf_counter() - started
    return len(lines), elapsed, batched


async def main(args: argparse.Namespace) -> None:
    url = args.url
    server = None
    if args.chdb:
        from tests.support.chdb_http import ChdbHttpServer

        server = ChdbHttpServer(tempfile.mkdtemp(prefix="bench-chdb-"))
        url = (await server.__aenter__()).url
    client = ClickHouseClient(url)
    version = (await client.select("SELECT version()"))[0][0]
    await client.aclose()
    print(f"ClickHouse {version} at {url}; {args.events:,} events, 10 columns")
    tag = f"bench_{os.getpid()}"
    try:
        for size in args.batch_sizes:
            prefix = f"{tag}_{size}_"
            elapsed, sink = await run_sink(url, args.events, size, prefix)
            database = sink.database_for("bench")
            rows, raw_elapsed, batched_elapsed = await raw_insert(url, database, size)
            await sink.aclose()
            del sink  # its state cache is not part of the next run's peak
            gc.collect()
            rate, raw_rate = args.events / elapsed, rows / raw_elapsed
            batched_rate = rows / batched_elapsed
            print(
                f"batch {size:>6,}: sink {rate:>9,.0f} events/s ({elapsed:6.1f} s) | raw TSV "
                f"INSERT of the {rows:,} final rows {raw_rate:>11,.0f} rows/s "
                f"({raw_elapsed:5.2f} s) | sink/raw {rate / raw_rate:6.1%} | raw in "
                f"{size:,}-row INSERTs {batched_rate:>9,.0f} rows/s | peak RSS "
                f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
            )
            client = ClickHouseClient(url)
            await client.execute(f"DROP DATABASE IF EXISTS `{database}`")
            await client.aclose()
    finally:
        if server is not None:
            await server.__aexit__(None, None, None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument(
        "--url", default=os.environ.get("CDC_TEST_CLICKHOUSE_URL", "http://127.0.0.1:58123/")
    )
    parser.add_argument("--chdb", action="store_true", help="use an in-process chdb instead")
    asyncio.run(main(parser.parse_args()))
