"""End to end: Cassandra at its maximum write rate, ``cdc-app run`` streaming into PostgreSQL,
ClickHouse and TimescaleDB (issue 6).

    eval "$(scripts/services env)"
    .venv/bin/python bench/e2e.py [--seconds 30] [--concurrency 128]

1. Cassandra alone: the load generator (prepared INSERTs through cassandra-driver's
   ``execute_concurrent``, one process) writes for ``--seconds``: its maximum sustainable
   rate on this machine, with nothing else running.
2. The same load with the pipeline running (a subprocess, as in production): Cassandra's
   write rate then, each destination's delivered events/s (``/status`` events over time),
   the pipeline process's CPU and peak RSS.
3. End-to-end lag, write to visible: every 100 ms a marker row is written and its write
   time kept; PostgreSQL's mirror and ClickHouse's current state are polled for it. The
   TimescaleDB server here takes one connection (the pipeline's), so its lag is the
   pipeline's own (``/status`` lag: now minus the write time of the newest delivered event,
   0 when caught up), sampled every 100 ms. After the load, the time to catch up.

4. With ``--drain-seconds``: the pipeline is stopped, the load writes that long, and the
   restarted pipeline's time to deliver it all: its own capacity, with no load beside it.

The target: the pipeline keeps up with Cassandra's own maximum rate, p99 lag under
commit log sync period (50 ms here) + 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.concurrent import execute_concurrent_with_args
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.e2e.harness import (
    CdcRawLinks,
    Pipeline,
    durable_end,
    free_port,
    pipeline_settings,
    write_config,
)

TABLE = """CREATE TABLE {ks}.events (id bigint PRIMARY KEY, kind text, email text, n int,
    score double, tags set<text>) WITH cdc = true"""
INSERT = "INSERT INTO {ks}.events (id, kind, email, n, score, tags) VALUES (?, ?, ?, ?, ?, ?)"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f'{name} is not set: eval "$(scripts/services env)" first')
    return value


class Load:
    """Writes rows as fast as Cassandra takes them, or at ``rate`` rows/s, for a while."""

    def __init__(
        self, session: Any, ks: str, concurrency: int, first_id: int, rate: float | None
    ) -> None:
        self.session = session
        self.insert = session.prepare(INSERT.format(ks=ks))
        self.concurrency = concurrency
        self.rate = rate
        self.next_id = first_id
        self.written = 0

    def run(self, seconds: float) -> float:
        """Rows per second over ``seconds`` (``written`` has how many)."""
        started = time.monotonic()
        # Unlimited: chunks that keep ``concurrency`` requests in flight. Limited: a tenth
        # of a second's rows every tenth of a second.
        chunk = self.concurrency * 8 if self.rate is None else max(1, round(self.rate / 10))
        while (elapsed := time.monotonic() - started) < seconds:
            if self.rate is not None and self.written > self.rate * elapsed:
                time.sleep(0.01)
                continue
            rows = [
                (i, "click", f"user{i % 1000}@example.com", i % 97, i / 7, {"a", "b"})
                for i in range(self.next_id, self.next_id + chunk)
            ]
            execute_concurrent_with_args(
                self.session, self.insert, rows, concurrency=self.concurrency
            )
            self.next_id += chunk
            self.written += chunk
        return self.written / (time.monotonic() - started)


def connect(hosts: str, consistency: str | None = None) -> Cluster:
    """A driver cluster for ``hosts`` (``host:port,...``, one port for all), at
    ``consistency`` (a level's name; None: the driver's default)."""
    points = [h.rpartition(":") for h in hosts.split(",")]
    profiles = {}
    if consistency is not None:
        level = ConsistencyLevel.name_to_value[consistency]
        profiles = {
            EXEC_PROFILE_DEFAULT: ExecutionProfile(consistency_level=level, request_timeout=60)
        }
    return Cluster(
        [a for a, _, _ in points],
        port=int(points[0][2] or 9042),
        execution_profiles=profiles,
        protocol_version=5,
    )


def _load_process(
    hosts: str, ks: str, concurrency: int, first_id: int, seconds: float, rate: float | None,
    consistency: str | None,
) -> tuple[float, float, int]:  # fmt: skip
    """:class:`Load` in a process of its own (see :func:`write_load`): its rate, the CPU
    seconds it used and the rows it wrote."""
    cluster = connect(hosts, consistency)
    session = cluster.connect()
    cpu = time.process_time()
    try:
        load = Load(session, ks, concurrency, first_id, rate)
        return load.run(seconds), time.process_time() - cpu, load.written
    finally:
        cluster.shutdown()


def write_load(
    hosts: str, ks: str, concurrency: int, first_id: int, seconds: float, rate: float | None,
    consistency: str | None = None,
) -> tuple[float, float, int]:  # fmt: skip
    """Rows per second the load reached, the CPU seconds the generator used and the rows it
    wrote. It saturates its interpreter, so it runs in a separate process: sharing one GIL
    with it would delay the markers and the pollers below and add that delay to every lag."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        args = (hosts, ks, concurrency, first_id, seconds, rate, consistency)
        return pool.submit(_load_process, *args).result()


COMPONENTS = {
    "cassandra": lambda comm, args: "CassandraDaemon" in args,
    "postgres": lambda comm, args: comm == "postgres",
    "clickhouse": lambda comm, args: comm.startswith("clickhouse"),
    "timescaledb (node)": lambda comm, args: "server.mjs" in args,
}


def cpu_seconds(pipeline_pid: int | None = None) -> dict[str, float]:
    """CPU seconds used so far by each component on this machine (all its processes)."""
    used = dict.fromkeys([*COMPONENTS, "pipeline"], 0.0)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        if int(proc.name) == pipeline_pid:
            used["pipeline"] += seconds
            continue
        for name, matches in COMPONENTS.items():
            if matches(comm, args):
                used[name] += seconds
    return used


def cpu_report(
    before: dict[str, float], after: dict[str, float], load_cpu: float, wall: float, rows: float
) -> dict[str, dict[str, float]]:
    """Each component's share of the machine over ``wall`` seconds: % of one core, and
    microseconds of CPU per row Cassandra took."""
    used = {name: after[name] - before[name] for name in after}
    used["load generator"] = load_cpu
    return {
        name: {"core_percent": round(100 * cpu / wall), "us_per_row": round(1e6 * cpu / rows)}
        for name, cpu in used.items()
        if cpu > 0
    }


class Markers:
    """A marker row every ``interval`` s (negative ids), and when each became visible."""

    def __init__(self, session: Any, ks: str) -> None:
        self.session = session
        self.insert = session.prepare(INSERT.format(ks=ks))
        self.written: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self, interval: float = 0.1) -> None:
        marker = 0
        while not self.stop.is_set():
            marker -= 1
            self.session.execute(self.insert, (marker, "marker", None, 0, 0.0, None))
            self.written[marker] = time.time()
            time.sleep(interval)


async def visible_lags(
    markers: Markers, pg_dsn: str, ch_url: str, ks: str, until: threading.Event
) -> dict[str, list[tuple[float, float]]]:
    """Poll both mirrors every 20 ms; a marker's lag is first-seen minus write time.
    Per mirror: (write time, lag) of each marker seen, in write order."""
    seen: dict[str, dict[int, float]] = {"postgres": {}, "clickhouse": {}}
    connection = await asyncpg.connect(pg_dsn)
    try:
        while not until.is_set():
            now = time.time()
            try:
                rows = await connection.fetch(f'SELECT id FROM {ks}."events__live" WHERE id < 0')
                for row in rows:
                    seen["postgres"].setdefault(row["id"], now)
            except asyncpg.UndefinedTableError:
                pass
            sql = f"SELECT id FROM {ks}.events WHERE id < 0"  # the current-state view
            for line in await asyncio.to_thread(_clickhouse, ch_url, sql):
                seen["clickhouse"].setdefault(int(line), now)
            await asyncio.sleep(0.02)
    finally:
        await connection.close()
    return {
        name: sorted(
            (markers.written[m], at - markers.written[m])
            for m, at in found.items()
            if m in markers.written
        )
        for name, found in seen.items()
    }


def _clickhouse(url: str, sql: str) -> list[str]:
    request = urllib.request.Request(url, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read().decode().split()
    except OSError:
        return []  # the database does not exist until the first batch


class Sampler:
    """Every 100 ms: the pipeline's ``/metrics`` (events written per destination, its lag,
    batch count and time) and the process's CPU time and RSS from /proc.

    ``/metrics`` is answered from memory; ``/status`` reads every destination's offset
    store and dead letters, and polling it this often would load the databases (and the
    one-connection TimescaleDB server) the benchmark is measuring.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        url = f"http://127.0.0.1:{self.pipeline.port}/metrics"
        while not self.stop.wait(0.1):
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    text = answer.read().decode()
            except OSError:
                continue
            cpu, rss = _proc(self.pipeline.pid)
            self.samples.append({"at": time.monotonic(), "cpu": cpu, "rss": rss, **_metrics(text)})


def _metrics(text: str) -> dict[str, dict[str, float]]:
    """Per destination: events written (all tables), lag, batches and their total time."""
    found: dict[str, dict[str, float]] = {
        "written": {}, "lag": {}, "batches": {}, "batch_seconds": {}
    }  # fmt: skip
    wanted = {
        "cdc_events_written_total": "written",
        "cdc_lag_seconds": "lag",
        "cdc_batch_duration_seconds_count": "batches",
        "cdc_batch_duration_seconds_sum": "batch_seconds",
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = wanted.get(sample.name)
            if key is not None:
                name = sample.labels["destination"]
                found[key][name] = found[key].get(name, 0.0) + sample.value
    return found


def _proc(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu, int(fields[21]) * PAGE


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument(
        "--rate",
        type=float,
        help="rows/s with the pipeline running (default: as fast as Cassandra takes them)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=0,
        help="then write this long with the pipeline stopped, and time its catch-up",
    )
    args = parser.parse_args()
    hosts = env("CDC_TEST_CASSANDRA_HOSTS")
    live = Path(env("CDC_TEST_CASSANDRA_CDC_RAW_DIR"))
    pg_dsn, ch_url = env("CDC_TEST_POSTGRES_DSN"), env("CDC_TEST_CLICKHOUSE_URL")
    ts_dsn = env("CDC_TEST_TIMESCALEDB_DSN")
    ks = f"bench_e2e_{os.urandom(3).hex()}"
    host, _, port = hosts.split(",")[0].partition(":")
    cluster = Cluster([host], port=int(port or 9042), protocol_version=5)
    session = cluster.connect()
    session.execute(
        f"CREATE KEYSPACE {ks} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.execute(TABLE.format(ks=ks))
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    report: dict[str, Any] = {
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "rate_limit_with_pipeline": args.rate,
    }
    try:
        print(f"[1/3] Cassandra alone for {args.seconds:g} s ...", flush=True)
        before, wall = cpu_seconds(), time.monotonic()
        alone, load_cpu, _ = write_load(hosts, ks, args.concurrency, 10**9, args.seconds, None)
        wall = time.monotonic() - wall
        report["cassandra_alone_rows_per_s"] = round(alone)
        report["cpu_alone"] = cpu_report(before, cpu_seconds(), load_cpu, wall, alone * wall)
        print(f"      {report['cassandra_alone_rows_per_s']:,} rows/s", flush=True)
        with CdcRawLinks(live, [workdir / "cdc_raw"]):
            await _with_pipeline(session, ks, hosts, pg_dsn, ch_url, ts_dsn, workdir, args, report)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        cluster.shutdown()
        await drop_schemas(pg_dsn, ts_dsn, ch_url, ks)
    print(json.dumps(report, indent=2))


async def _with_pipeline(
    session: Any,
    ks: str,
    hosts: str,
    pg_dsn: str,
    ch_url: str,
    ts_dsn: str,
    workdir: Path,
    args: argparse.Namespace,
    report: dict[str, Any],
) -> None:
    port = free_port()
    settings = pipeline_settings(
        workdir=workdir,
        cdc_raw_dir=workdir / "cdc_raw",
        keyspace=ks,
        cassandra_hosts=hosts,
        postgres_dsn=pg_dsn,
        clickhouse_url=ch_url,
        clickhouse_prefix="",
        timescaledb_dsn=ts_dsn,
        timescaledb_schema=ks,
        port=port,
        max_batch_events=5000,
        max_batch_delay_ms=20,
    )
    settings["logging"]["level"] = "warning"
    # The shared database keeps every run's offsets: this run's go with its own tables.
    settings["destinations"][0]["metadata_schema"] = ks
    pipeline = Pipeline(write_config(workdir / "cdc.yaml", settings), port, workdir / "run.log")
    connection = await asyncpg.connect(ts_dsn)  # its schema, before the pipeline connects
    await connection.execute(f'CREATE SCHEMA "{ks}"')
    await connection.close()
    pipeline.start()
    try:
        # One row through first: each destination creates its tables on its first batch,
        # a one-off that belongs to no steady state.
        session.execute(
            session.prepare(INSERT.format(ks=ks)), (-(10**12), "warm-up", None, 0, 0.0, None)
        )
        await asyncio.to_thread(pipeline.wait_caught_up, durable_end(workdir / "cdc_raw"), 120)
        print(f"[2/3] the same load with the pipeline streaming, {args.seconds:g} s ...")
        markers, sampler = Markers(session, ks), Sampler(pipeline)
        polling = threading.Event()
        threads = [threading.Thread(target=markers.run), threading.Thread(target=sampler.run)]
        for thread in threads:
            thread.start()
        lags = asyncio.create_task(visible_lags(markers, pg_dsn, ch_url, ks, polling))
        before, started = cpu_seconds(pipeline.pid), time.monotonic()
        rate, load_cpu, _ = await asyncio.to_thread(
            write_load, hosts, ks, args.concurrency, 0, args.seconds, args.rate
        )
        load_ended = time.monotonic()
        wall = load_ended - started
        report["cassandra_with_pipeline_rows_per_s"] = round(rate)
        report["cpu_with_pipeline"] = cpu_report(
            before, cpu_seconds(pipeline.pid), load_cpu, wall, rate * wall
        )
        markers.stop.set()
        print("[3/3] waiting for the destinations to catch up ...", flush=True)
        await asyncio.to_thread(pipeline.wait_caught_up, durable_end(workdir / "cdc_raw"), 900)
        caught_up = time.monotonic()
        await asyncio.sleep(0.5)
        polling.set()
        sampler.stop.set()
        for thread in threads:
            thread.join()
        visible = await lags
        if args.drain_seconds:
            report["drain"] = await _drain(hosts, ks, workdir, pipeline, args)
    finally:
        pipeline.stop()
    _summarise(report, sampler.samples, visible, started, load_ended, caught_up)


async def _drain(
    hosts: str, ks: str, workdir: Path, pipeline: Pipeline, args: argparse.Namespace
) -> dict[str, float]:
    """The pipeline's own capacity: rows written while it is stopped, then how fast it
    delivers them to every destination once restarted, with the machine to itself."""
    pipeline.stop()
    print(f"[drain] {args.drain_seconds:g} s of writes, the pipeline stopped; then its catch-up")
    _, _, rows = await asyncio.to_thread(
        write_load, hosts, ks, args.concurrency, 10**10, args.drain_seconds, None
    )
    target = durable_end(workdir / "cdc_raw")
    pipeline.start()
    started, cpu = time.monotonic(), _proc(pipeline.pid)[0]
    await asyncio.to_thread(pipeline.wait_caught_up, target, 900)
    seconds = time.monotonic() - started
    return {
        "rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds),
        "pipeline_cpu_percent": round(100 * (_proc(pipeline.pid)[0] - cpu) / seconds),
    }


def _summarise(
    report: dict[str, Any],
    samples: list[dict[str, Any]],
    visible: dict[str, list[tuple[float, float]]],
    started: float,
    load_ended: float,
    caught_up: float,
) -> None:
    during = [s for s in samples if s["at"] <= load_ended]
    first, last, end = during[0], during[-1], samples[-1]
    span = last["at"] - first["at"]
    names = sorted(end["written"])

    def delta(key: str, name: str, a: dict[str, Any], b: dict[str, Any]) -> float:
        return b[key].get(name, 0.0) - a[key].get(name, 0.0)

    report["delivered_events_per_s_during_load"] = {
        n: round(delta("written", n, first, last) / span) for n in names
    }
    report["delivered_events_per_s_overall"] = {
        n: round(end["written"][n] / (caught_up - started)) for n in names
    }
    report["batches_during_load"] = {
        n: {
            "count": round(batches := delta("batches", n, first, last)),
            "mean_events": round(delta("written", n, first, last) / max(batches, 1)),
            "mean_seconds": round(delta("batch_seconds", n, first, last) / max(batches, 1), 3),
        }
        for n in names
    }
    report["catch_up_after_load_s"] = round(caught_up - load_ended, 1)
    report["lag_write_to_visible_s"] = {
        name: {"p50": round(percentile(lags, 0.5), 3), "p99": round(percentile(lags, 0.99), 3),
               "markers": len(lags)}
        for name, v in visible.items()
        if (lags := [lag for _, lag in v]) is not None
    }  # fmt: skip
    # The worst lag of each 2-second stretch of the load: a start-up transient, periodic
    # stalls and a backlog that keeps growing look different here, alike in a percentile.
    report["worst_lag_per_2s_s"] = {
        name: [
            round(max((lag for at, lag in v if t <= at - v[0][0] < t + 2), default=0.0), 2)
            for t in range(0, int(v[-1][0] - v[0][0]) + 1, 2)
        ]
        for name, v in visible.items()
        if v
    }
    reported: dict[str, list[float]] = {n: [] for n in names}
    for sample in during:
        for name, lag in sample["lag"].items():
            reported.setdefault(name, []).append(lag)
    report["lag_reported_by_pipeline_s"] = {
        n: {"p50": round(percentile(v, 0.5), 3), "p99": round(percentile(v, 0.99), 3)}
        for n, v in reported.items()
    }
    cpu = (end["cpu"] - first["cpu"]) / (end["at"] - first["at"])
    report["pipeline_cpu_percent"] = round(100 * cpu)
    report["pipeline_rss_mib"] = {
        "median": round(statistics.median(s["rss"] for s in samples) / 2**20),
        "peak": round(max(s["rss"] for s in samples) / 2**20),
    }


async def drop_schemas(pg_dsn: str, ts_dsn: str, ch_url: str, ks: str) -> None:
    """The bench's schemas in PostgreSQL and TimescaleDB and its ClickHouse database."""
    for dsn in (pg_dsn, ts_dsn):
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{ks}" CASCADE')
        finally:
            await connection.close()
    _clickhouse(ch_url, f"DROP DATABASE IF EXISTS {ks}")


if __name__ == "__main__":
    asyncio.run(main())
