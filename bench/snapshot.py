"""Snapshot throughput against the driver's bare token-range scan and PostgreSQL's COPY.

    eval "$(scripts/services env)"
    .venv/bin/python bench/snapshot.py [--rows 1000000] [--repeat 3] [--phases scan,pg,ch,ts,all]

A 10-column table (``bigint`` key; text, int, bigint, double, boolean, timestamp, uuid
columns) is loaded with ``--rows`` rows (kept between runs: ``--reload`` writes it
again). Then, in the same run, one phase after the other, each in a process of its own
(so its CPU time and peak memory are its own):

* ``scan``: the driver's bare token-range scan of the table (its own Cython row
  decoding, no ``WRITETIME``/``TTL``, no writes), over the same ranges the snapshot
  reads, ``--concurrency`` ranges at a time, pages of ``--page-rows``;
* ``pg``, ``ch``, ``ts``: the snapshot use case into one destination (PostgreSQL
  mirror, ClickHouse, TimescaleDB history), through the real adapters, into fresh
  tables; after ``pg``, a binary ``COPY`` of the same rows (read back from the mirror)
  into an UNLOGGED table with the same primary key: PostgreSQL's bulk-load rate;
* ``all``: the snapshot into the three at once (each range read once for all);
* ``null``: the snapshot into a destination that discards what it is given: what reading,
  decoding, masking and validating cost without any sink.

Targets (issue "Initial snapshot"): into one destination at >= 50% of the bare scan's
rows/s, into all three at >= 30%. Rows/s are wall-clock; CPU is the phase process's
user+system seconds per wall second (Cassandra and the databases run elsewhere and are
not counted); peak RSS is the phase process's. With ``--repeat`` the median run of each
phase is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cdc_adapters.cassandra import CassandraSchemaSource, CassandraSnapshotSource
from cdc_adapters.cassandra.driver import parse_host
from cdc_adapters.clickhouse import ClickHouseSink
from cdc_adapters.local import SystemClock
from cdc_adapters.memory import MemoryDeadLetterQueue, MemoryOffsetStore, MemorySchemaHistory
from cdc_adapters.postgres import PostgresSink, create_pool
from cdc_adapters.timescaledb import TimescaleHistorySink
from cdc_app.garbage_collection import tune_for_streaming
from cdc_domain.delivery import ExclusiveSink
from cdc_domain.destinations import DestinationKind
from cdc_domain.health import HealthReport, HealthStatus
from cdc_domain.masking import MaskingPolicy
from cdc_domain.ports import OffsetCommittingSink, Sink, SinkBatch
from cdc_domain.replication import Destination
from cdc_domain.schema_changes import SchemaChange
from cdc_domain.schema_evolution import SchemaEvolution
from cdc_domain.snapshot import Selection, Snapshot, SnapshotTuning
from cdc_domain.tokens import split_ring

KEYSPACE = "bench_snapshot"
TABLE = "users"
COLUMNS = (
    ("name", "text"), ("email", "text"), ("city", "text"), ("status", "text"),
    ("age", "int"), ("visits", "bigint"), ("score", "double"), ("active", "boolean"),
    ("seen", "timestamp"), ("ref", "uuid"),
)  # fmt: skip
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f'{name} is not set: run `eval "$(scripts/services env)"` first')
    return value


def _row(rng: random.Random, key: int) -> tuple[Any, ...]:
    return (
        key, f"user {rng.randrange(10**6)}", f"u{key}@example.com",
        rng.choice(["Oslo", "Lyon", "Kyoto", "Lima"]), rng.choice(["new", "active", "gone"]),
        rng.randrange(100), rng.randrange(10**9), rng.random(), rng.random() < 0.5,
        EPOCH + dt.timedelta(seconds=rng.randrange(10**7)), uuid.UUID(int=rng.getrandbits(128)),
    )  # fmt: skip


def _cluster() -> Any:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    host, port = parse_host(_env("CDC_TEST_CASSANDRA_HOSTS").split(",")[0])
    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([host]), request_timeout=60
    )
    return Cluster(
        [host], port=port, execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5
    )


def load(rows: int, reload: bool) -> None:
    """The table with ``rows`` rows, written once and kept for later runs."""
    from cassandra.concurrent import execute_concurrent_with_args

    cluster = _cluster()
    session = cluster.connect()
    try:
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        marker = f"{KEYSPACE}.loaded"
        session.execute(f"CREATE TABLE IF NOT EXISTS {marker} (id int PRIMARY KEY, rows bigint)")
        found = session.execute(f"SELECT rows FROM {marker} WHERE id = 0").one()
        if found is not None and found[0] == rows and not reload:
            print(f"{KEYSPACE}.{TABLE} holds {rows:,} rows already")
            return
        definition = ", ".join(f"{n} {t}" for n, t in COLUMNS)
        session.execute(f"DROP TABLE IF EXISTS {KEYSPACE}.{TABLE}")
        session.execute(f"CREATE TABLE {KEYSPACE}.{TABLE} (id bigint PRIMARY KEY, {definition})")
        names = ", ".join(n for n, _ in COLUMNS)
        insert = session.prepare(
            f"INSERT INTO {KEYSPACE}.{TABLE} (id, {names}) VALUES ({', '.join('?' * 11)})"
        )
        rng = random.Random(7)
        started = time.perf_counter()
        for start in range(0, rows, 20_000):
            batch = [_row(rng, k) for k in range(start, min(rows, start + 20_000))]
            execute_concurrent_with_args(session, insert, batch, concurrency=128)
        session.execute(f"INSERT INTO {marker} (id, rows) VALUES (0, {rows})")
        print(f"loaded {rows:,} rows in {time.perf_counter() - started:.0f} s")
    finally:
        cluster.shutdown()


# -- phases (each in a process of its own) ------------------------------------------


async def scan(concurrency: int, page_rows: int) -> tuple[int, dict[str, Any]]:
    """The driver's own token-range scan: default row decoding, same ranges; timed from
    the first page asked for, as the snapshot is (connecting and planning are left out
    of both)."""
    hosts = _env("CDC_TEST_CASSANDRA_HOSTS").split(",")
    schemas = CassandraSchemaSource(hosts=hosts)
    try:
        ring = await CassandraSnapshotSource(schemas).ring(KEYSPACE)
        ranges = split_ring(ring, _pieces(len(ring), concurrency), all_ranges=True)
    finally:
        await schemas.aclose()
    from cassandra import ConsistencyLevel

    cluster = _cluster()
    session = cluster.connect()
    names = ", ".join(n for n, _ in COLUMNS)
    statement = session.prepare(
        f"SELECT id, {names} FROM {KEYSPACE}.{TABLE} WHERE token(id) > ? AND token(id) <= ?"
    )
    statement.fetch_size = page_rows
    statement.consistency_level = ConsistencyLevel.LOCAL_QUORUM
    loop = asyncio.get_running_loop()
    queue = list(ranges)
    counted = 0

    def page(paging_state: Any, bounds: Any) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = loop.create_future()
        future = session.execute_async(statement, bounds, paging_state=paging_state)
        future.add_callbacks(
            lambda _: loop.call_soon_threadsafe(done.set_result, future.result()),
            lambda exc: loop.call_soon_threadsafe(done.set_exception, exc),
        )
        return done

    async def worker() -> None:
        nonlocal counted
        while queue:
            token_range = queue.pop()
            bounds = (token_range.start, token_range.end)
            pending: asyncio.Future[Any] | None = page(None, bounds)
            while pending is not None:
                result = await pending
                state = result.paging_state
                pending = page(state, bounds) if state else None
                for _ in result.current_rows:
                    counted += 1

    extra: dict[str, Any] = {}
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        extra["seconds"] = time.perf_counter() - wall
        extra["cpu_s"] = time.process_time() - cpu
    finally:
        cluster.shutdown()
    return counted, extra


def _pieces(ring: int, concurrency: int) -> int:
    tuning = SnapshotTuning(concurrency=concurrency)
    wanted = max(tuning.min_ranges, concurrency * 4)
    return max(1, -(-wanted // ring))


async def snapshot(
    destinations: list[str], concurrency: int, page_rows: int
) -> tuple[int, dict[str, Any]]:
    """The snapshot use case into ``destinations``; (rows read, extra figures)."""
    hosts = _env("CDC_TEST_CASSANDRA_HOSTS").split(",")
    clock = SystemClock()
    tag = uuid.uuid4().hex[:8]
    schemas = CassandraSchemaSource(hosts=hosts)
    source = CassandraSnapshotSource(schemas, page_rows=page_rows)
    sinks: list[Sink] = []
    pg_dsn = os.environ.get("CDC_TEST_POSTGRES_DSN")
    ts_dsn = os.environ.get("CDC_TEST_TIMESCALEDB_DSN")
    ch_url = os.environ.get("CDC_TEST_CLICKHOUSE_URL")
    namespace = f"bench_snap_{tag}"
    if "pg" in destinations:
        sinks.append(
            PostgresSink(name="pg", dsn=_env("CDC_TEST_POSTGRES_DSN"), schema=namespace,
                         metadata_schema=namespace)
        )  # fmt: skip
    if "ch" in destinations:
        sinks.append(ClickHouseSink(name="ch", url=_env("CDC_TEST_CLICKHOUSE_URL"),
                                    database_prefix=f"{namespace}_"))  # fmt: skip
    if "null" in destinations:
        sinks.append(_Discard())
    if "ts" in destinations:
        sinks.append(
            TimescaleHistorySink(name="ts", dsn=_env("CDC_TEST_TIMESCALEDB_DSN"),
                                 schema=namespace, metadata_schema=namespace)
        )  # fmt: skip
    shared = MemoryOffsetStore(clock)
    extra: dict[str, Any] = {}
    try:
        for sink in sinks:
            check = getattr(sink, "check_ready", None)
            if check is not None:
                await check()
        await schemas.refresh()
        schema = await schemas.table(KEYSPACE, TABLE)
        assert schema is not None
        snapshot = Snapshot(
            source=source,
            destinations=[
                Destination(
                    ExclusiveSink(s),
                    s.offset_store(clock) if isinstance(s, OffsetCommittingSink) else shared,
                )
                for s in sinks
            ],
            dead_letters=MemoryDeadLetterQueue(),
            clock=clock,
            masking=MaskingPolicy(),
            evolution=SchemaEvolution(MemorySchemaHistory()),
            partition_id="bench",
            tuning=SnapshotTuning(concurrency=concurrency),
        )
        plan = await snapshot.plan([schema], selection=Selection.RESTART, all_ranges=True)
        await snapshot.begin(plan)
        cpu, wall = time.process_time(), time.perf_counter()
        report = await snapshot.run(plan)
        extra["seconds"] = time.perf_counter() - wall
        extra["cpu_s"] = time.process_time() - cpu
        assert report.ok, report.failed
        extra["ranges"] = len(plan.tables[0].ranges)
        if "pg" in destinations and len(destinations) == 1:
            extra["copy"] = await copy_baseline(pg_dsn or "", f'"{namespace}"."{TABLE}__live"')
    finally:
        for sink in sinks:
            await sink.aclose()
        await schemas.aclose()
        await _drop(namespace, pg_dsn, ch_url, ts_dsn, destinations)
    return report.rows[schema.qualified_name], extra


class _Discard:
    """A destination that takes everything and keeps nothing."""

    name = "null"
    kind = DestinationKind.MEMORY
    commits_offsets = False

    async def write(self, batch: SinkBatch) -> None:
        return None

    async def apply_schema_change(self, change: SchemaChange) -> None:
        return None

    async def health(self) -> HealthReport:
        return HealthReport("null", HealthStatus.UP, 0.0)

    async def aclose(self) -> None:
        return None


async def copy_baseline(dsn: str, source: str) -> dict[str, float]:
    """A binary COPY of the mirror's rows into an UNLOGGED table with the same key."""
    names = ", ".join(['"id"'] + [f'"{n}"' for n, _ in COLUMNS])
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            buffer = io.BytesIO()
            await connection.copy_from_query(
                f"SELECT {names} FROM {source}", output=buffer, format="binary"
            )
            await connection.execute(
                "DROP TABLE IF EXISTS bench_snapshot_copy; CREATE UNLOGGED TABLE "
                f"bench_snapshot_copy AS SELECT {names} FROM {source} WITH NO DATA; "
                'ALTER TABLE bench_snapshot_copy ADD PRIMARY KEY ("id")'
            )
            rows = await connection.fetchval(f"SELECT count(*) FROM {source}")
            buffer.seek(0)
            started = time.perf_counter()
            await connection.copy_to_table("bench_snapshot_copy", source=buffer, format="binary")
            seconds = time.perf_counter() - started
            await connection.execute("DROP TABLE bench_snapshot_copy")
        return {"rows": rows, "seconds": seconds}
    finally:
        await pool.close()


async def _drop(
    namespace: str, pg: str | None, ch: str | None, ts: str | None, destinations: list[str]
) -> None:
    import aiohttp
    import asyncpg

    if "pg" in destinations and pg:
        connection = await asyncpg.connect(pg)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
        await connection.close()
    if "ts" in destinations and ts:
        connection = await asyncpg.connect(ts)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
        await connection.close()
    if "ch" in destinations and ch:
        async with aiohttp.ClientSession() as http:
            query = f"DROP DATABASE IF EXISTS {namespace}_{KEYSPACE}"
            async with http.post(ch, data=query.encode()) as response:
                await response.read()


def phase(name: str, concurrency: int, page_rows: int) -> dict[str, Any]:
    """One phase, measured in this process, its collector set as ``cdc-app snapshot``
    sets it (for the bare scan too, so both sides run alike)."""
    tune_for_streaming()
    if name == "scan":
        rows, extra = asyncio.run(scan(concurrency, page_rows))
    else:
        wanted = ["pg", "ch", "ts"] if name == "all" else [name]
        rows, extra = asyncio.run(snapshot(wanted, concurrency, page_rows))
    seconds, cpu_s = extra.pop("seconds"), extra.pop("cpu_s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "seconds": seconds, "cpu_s": cpu_s, "peak_rss_mib": peak, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--page-rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--phases", default="scan,pg,ch,ts,all")
    parser.add_argument("--reload", action="store_true", help="write the table again")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # a child process's one phase
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.concurrency, args.page_rows)))
        return
    load(args.rows, args.reload)
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}; load average {os.getloadavg()[0]:.1f} at start")
    results: dict[str, list[dict[str, Any]]] = {}
    for run in range(args.repeat):
        for name in args.phases.split(","):
            child = subprocess.run(
                [sys.executable, __file__, "--phase", name, "--concurrency",
                 str(args.concurrency), "--page-rows", str(args.page_rows)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if child.returncode != 0:
                sys.exit(f"phase {name} failed:\n{child.stderr[-3000:]}")
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            results.setdefault(name, []).append(measured)
            rate = measured["rows"] / measured["seconds"]
            print(
                f"run {run + 1} {name:>4}: {rate:>9,.0f} rows/s, "
                f"CPU {measured['cpu_s'] / measured['seconds']:.2f}, "
                f"peak RSS {measured['peak_rss_mib']:.0f} MiB, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    report(results, args)


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    def median(name: str) -> dict[str, Any]:
        runs = results[name]
        rate = statistics.median_low([r["rows"] / r["seconds"] for r in runs])
        return next(r for r in runs if r["rows"] / r["seconds"] == rate)

    load_avg = os.getloadavg()
    print(
        f"\n{args.rows:,} rows, 10 columns, concurrency {args.concurrency}, pages of "
        f"{args.page_rows}, median of {args.repeat}; load average {load_avg[0]:.1f}"
    )
    scan_rate = None
    if "scan" in results:
        scanned = median("scan")
        scan_rate = scanned["rows"] / scanned["seconds"]
    print("| phase | rows | rows/s | vs bare scan | CPU (cores) | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, _runs in results.items():
        found = median(name)
        rate = found["rows"] / found["seconds"]
        ratio = f"{rate / scan_rate:.0%}" if scan_rate else "-"
        print(
            f"| {name} | {found['rows']:,} | {rate:,.0f} | {ratio} | "
            f"{found['cpu_s'] / found['seconds']:.2f} | {found['peak_rss_mib']:.0f} MiB |"
        )
        if "copy" in found:
            copy = found["copy"]
            copy_rate = copy["rows"] / copy["seconds"]
            print(f"| pg COPY | {copy['rows']:,} | {copy_rate:,.0f} | snapshot/COPY "
                  f"{rate / copy_rate:.0%} | - | - |")  # fmt: skip
    if scan_rate:
        print(summary(results, scan_rate))


def summary(results: dict[str, list[dict[str, Any]]], scan_rate: float) -> str:
    """The last line: the slowest single destination's and the three's share of the
    bare scan's rate, against the issue's targets (50% and 30%)."""

    def ratio(name: str) -> float:
        rates = sorted(r["rows"] / r["seconds"] for r in results[name])
        return statistics.median_low(rates) / scan_rate

    single = {name: ratio(name) for name in ("pg", "ch", "ts") if name in results}
    parts = []
    if single:
        slowest = min(single.values())
        each = ", ".join(f"{name} {value:.0%}" for name, value in single.items())
        met = "met" if slowest >= 0.5 else "missed"
        parts.append(f"{slowest:.0%} of bare scan (one destination: {each}; >= 50% {met})")
    if "all" in results:
        three = ratio("all")
        met = "met" if three >= 0.3 else "missed"
        parts.append(f"{three:.0%} (three destinations; >= 30% {met})")
    return "snapshot: " + (", ".join(parts) or "no snapshot phase run")


if __name__ == "__main__":
    main()
