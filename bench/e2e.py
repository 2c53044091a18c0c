"""End to end: ``cdc-app run`` streaming Cassandra's commit log into PostgreSQL, ClickHouse
and TimescaleDB, its cost, catch-up speed, lag and memory measured against Cassandra's own
on this machine, every ratio from figures of one run (issue 16).

    eval "$(scripts/services env)"
    .venv/bin/python bench/e2e.py [--runs 3] [--seconds 20] [--warmup-seconds 10]
        [--rss-backlog-factor 10] [--concurrency 128] [--sync-period-ms 50]
        [--reader-process]

One keyspace, one table, one pipeline configuration for the whole bench. The load
generator (prepared INSERTs through cassandra-driver's ``execute_concurrent``) runs in a
process of its own: sharing an interpreter with it would delay the lag pollers. CPU and
RSS come from /proc: Cassandra's JVM, each database server, and the agent's process with
all its descendants (it may run workers in processes of their own).

Setup: the pipeline started and one row through (each destination creates its tables on
its first batch); the agent's idle RSS then, a fresh process caught up with nothing to do
(one that just drained a backlog keeps its allocator's high-water mark). Then
``--warmup-seconds`` at Cassandra's maximum rate with the pipeline stopped, and its
catch-up: a cold JVM spends 2-3 times the CPU per write of a JIT-compiled one, and
Cassandra's figures are the denominators of every ratio.

Each run (``--runs``; the summary gives their medians):

1. Solo: the pipeline stopped, Cassandra alone at its maximum rate for ``--seconds``: its
   rate R and its CPU per write.
2. Catch-up: those writes are the backlog. The pipeline started, the time until every
   destination confirmed writing all of them (``cdc_events_written_total`` on
   ``/metrics``, which answers from memory: ``/status`` reads every destination's offsets,
   a turn on the one-connection TimescaleDB each time), counted from the process's start,
   since a restart's start-up is part of catching up. Catch-up ratio: rows / seconds / R.
   The agent's peak RSS meanwhile.
3. 50% load: the pipeline streaming while the load writes at 0.5 R for ``--seconds``, a
   marker row every 100 ms. Write-to-visible lag: each marker's first sight in
   PostgreSQL's ``<table>__live`` view and in the table ClickHouse's current-state view
   reads (see :func:`visible_lags`), polled every 20 ms. The TimescaleDB server here takes
   one connection at a time, the pipeline's, so its lag is the pipeline's own
   ``cdc_lag_seconds{destination="ts"}``, sampled every 100 ms: 0 after any batch that
   found less than a full one, so a floor that only shows a destination falling behind.
   Cost ratio: the agent's CPU from the phase's start until it delivered every write to
   every destination, per write, over Cassandra's CPU per write in the same seconds. Each
   database server's CPU per write too.

Then once (``--rss-backlog-factor 0`` skips it): the pipeline stopped while that many
times a solo phase's rows (the median) are written at the maximum rate, then started: its
peak RSS until caught up over its idle RSS.

Targets: cost ratio <= 0.25; catch-up ratio >= 1.5; p99 lag at 50% below the commit log
sync period (read from the running node's cassandra.yaml) + 1 s in every destination;
peak RSS under a 10x backlog <= 2x idle. The load average is printed at the start, before
each run and at the end; the JSON report holds every figure, the command and the machine.
The last line: ``cost ratio: X, catch-up ratio: Y, p99 at 50%: Z s``, medians of the runs
(Z: the worst destination's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import yaml
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.concurrent import execute_concurrent_with_args

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
DESTINATIONS = {"pg": "postgres", "ch": "clickhouse", "ts": "timescaledb"}
MIB = 2**20
T = TypeVar("T")


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f'{name} is not set: eval "$(scripts/services env)" first')
    return value


# ---------------------------------------------------------------------------- load


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

    def run(self, seconds: float, limit: int | None = None) -> float:
        """Rows per second over ``seconds``, or until ``limit`` rows (``written`` has how
        many)."""
        started = time.monotonic()
        # Unlimited: chunks that keep ``concurrency`` requests in flight. Limited: a tenth
        # of a second's rows every tenth of a second.
        chunk = self.concurrency * 8 if self.rate is None else max(1, round(self.rate / 10))
        while (elapsed := time.monotonic() - started) < seconds:
            if limit is not None and self.written >= limit:
                break
            if self.rate is not None and self.written > self.rate * elapsed:
                time.sleep(0.01)
                continue
            size = chunk if limit is None else min(chunk, limit - self.written)
            rows = [
                (i, "click", f"user{i % 1000}@example.com", i % 97, i / 7, {"a", "b"})
                for i in range(self.next_id, self.next_id + size)
            ]
            execute_concurrent_with_args(
                self.session, self.insert, rows, concurrency=self.concurrency
            )
            self.next_id += size
            self.written += size
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
    consistency: str | None, limit: int | None,
) -> tuple[float, float, int]:  # fmt: skip
    """:class:`Load` in a process of its own (see :func:`write_load`): its rate, the CPU
    seconds it used and the rows it wrote."""
    cluster = connect(hosts, consistency)
    session = cluster.connect()
    cpu = time.process_time()
    try:
        load = Load(session, ks, concurrency, first_id, rate)
        return load.run(seconds, limit), time.process_time() - cpu, load.written
    finally:
        cluster.shutdown()


def write_load(
    hosts: str, ks: str, concurrency: int, first_id: int, seconds: float, rate: float | None,
    consistency: str | None = None, limit: int | None = None,
) -> tuple[float, float, int]:  # fmt: skip
    """Rows per second the load reached, the CPU seconds the generator used and the rows it
    wrote (at most ``limit``). It saturates its interpreter, so it runs in a separate
    process: sharing one GIL with it would delay the markers and the pollers below and add
    that delay to every lag."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        args = (hosts, ks, concurrency, first_id, seconds, rate, consistency, limit)
        return pool.submit(_load_process, *args).result()


# ---------------------------------------------------------------------------- /proc


COMPONENTS = {
    "cassandra": lambda comm, args: "CassandraDaemon" in args,
    "postgres": lambda comm, args: comm == "postgres",
    "clickhouse": lambda comm, args: comm.startswith("clickhouse"),
    "timescaledb (node)": lambda comm, args: "server.mjs" in args,
}


class Stat(NamedTuple):
    ppid: int
    comm: str
    cpu: float
    """CPU seconds, its own and its waited-for children's: a PostgreSQL backend or an agent
    worker that exited during a phase is still counted, in its parent."""
    rss: int


class Usage(NamedTuple):
    cpu: float
    rss: int


def _stats() -> dict[int, Stat]:
    """Every process on this machine now."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(proc.name)] = Stat(
            ppid=int(fields[1]),
            comm=stat[stat.index("(") + 1 : stat.rindex(")")],
            cpu=sum(int(f) for f in fields[11:15]) / CLOCK_TICKS,
            rss=int(fields[21]) * PAGE,
        )
    return found


def _tree(pid: int, stats: dict[int, Stat]) -> list[int]:
    """``pid`` and all its descendants (that are alive)."""
    children: dict[int, list[int]] = {}
    for child, stat in stats.items():
        children.setdefault(stat.ppid, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            found.append(current)
            todo += children.get(current, [])
    return found


def agent_usage(pid: int) -> Usage:
    """CPU seconds and RSS bytes of the agent: its process and all its descendants."""
    stats = _stats()
    tree = [stats[p] for p in _tree(pid, stats)]
    return Usage(sum(s.cpu for s in tree), sum(s.rss for s in tree))


def cpu_seconds(pipeline_pid: int | None = None) -> dict[str, float]:
    """CPU seconds used so far by each component on this machine (all its processes), the
    pipeline's with all its descendants."""
    stats = _stats()
    agent = set(_tree(pipeline_pid, stats)) if pipeline_pid is not None else set()
    used = dict.fromkeys([*COMPONENTS, "pipeline"], 0.0)
    for pid, stat in stats.items():
        if pid in agent:
            used["pipeline"] += stat.cpu
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        args = raw.replace(b"\0", b" ").decode(errors="replace")
        for name, matches in COMPONENTS.items():
            if matches(stat.comm, args):
                used[name] += stat.cpu
    return used


def sync_period_ms(given: float | None) -> tuple[float, str]:
    """The commit log sync period and where it comes from: ``--sync-period-ms``, else the
    configuration file of the running Cassandra (its ``-Dcassandra.config``), else 50 ms,
    what ``scripts/services`` writes there."""
    if given is not None:
        return given, "--sync-period-ms"
    prefix = "-Dcassandra.config=file://"
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        path = next((Path(a.removeprefix(prefix)) for a in args if a.startswith(prefix)), None)
        if path is None or not any("CassandraDaemon" in a for a in args):
            continue
        config = yaml.safe_load(path.read_text())
        if "commitlog_sync_period_in_ms" in config:  # 4.0
            return float(config["commitlog_sync_period_in_ms"]), str(path)
        value = str(config.get("commitlog_sync_period", ""))
        if match := re.fullmatch(r"(\d+)\s*(ms|s)", value):
            return float(match[1]) * (1000 if match[2] == "s" else 1), str(path)
    return 50.0, "scripts/services' setting (no running Cassandra's configuration found)"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "")
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])  # MemTotal
    return {
        "cpus": os.cpu_count(),
        "cpu": model or platform.machine(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cassandra": os.environ.get("CDC_TEST_CASSANDRA_VERSION"),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------- lag


class Markers:
    """A marker row every ``interval`` s, ids counting down from below ``below`` (each
    phase its own: the mirrors keep earlier phases' markers), and when each was written."""

    def __init__(self, session: Any, ks: str, below: int = 0) -> None:
        self.session = session
        self.insert = session.prepare(INSERT.format(ks=ks))
        self.below = below
        self.written: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self, interval: float = 0.1) -> None:
        marker = self.below
        while not self.stop.is_set():
            marker -= 1
            self.session.execute(self.insert, (marker, "marker", None, 0, 0.0, None))
            self.written[marker] = time.time()
            time.sleep(interval)


async def visible_lags(
    markers: Markers, pg_dsn: str, ch_url: str, ks: str, until: threading.Event
) -> dict[str, list[tuple[float, float]]]:
    """Poll both mirrors every 20 ms; a marker's lag is first-seen minus write time.
    Per mirror: (write time, lag) of each marker seen, in write order.

    ClickHouse is asked for ``<table>__cdc_rows``, the aggregating table its current-state
    view reads row markers from: the sink's INSERT fills it through a materialized view
    before it returns, so a row is in the view the moment it is there. The view itself
    costs ClickHouse ~130 ms of query analysis however few rows match: polled every 20 ms
    it took 84% of a core here, the bench's load rather than the pipeline's, and its
    answers came every 150 ms.
    """
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
            sql = f"SELECT DISTINCT id FROM {ks}.events__cdc_rows WHERE id < 0"
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


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(lags: list[float]) -> dict[str, float]:
    """p50 and p99 of ``lags`` and how many there are."""
    return {
        "p50": round(percentile(lags, 0.5), 3),
        "p99": round(percentile(lags, 0.99), 3),
        "count": len(lags),
    }


class Every(Generic[T]):
    """Calls ``sample`` every ``interval`` s in a thread while in the ``with`` block and
    keeps (monotonic time, result) pairs."""

    def __init__(self, sample: Callable[[], T], interval: float = 0.1) -> None:
        self.sample = sample
        self.interval = interval
        self.samples: list[tuple[float, T]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Every[T]:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.monotonic(), self.sample()))


# ---------------------------------------------------------------------------- phases


@dataclass
class Bench:
    """The phases, on one keyspace and one pipeline; load ids never repeat, so every
    write inserts a row."""

    session: Any
    ks: str
    hosts: str
    pg_dsn: str
    ch_url: str
    pipeline: Pipeline
    cdc_raw: Path
    concurrency: int
    next_id: int = 0

    async def write(
        self, seconds: float, rate: float | None = None, limit: int | None = None
    ) -> tuple[float, float, int]:
        """:func:`write_load` on fresh ids."""
        load = (self.hosts, self.ks, self.concurrency, self.next_id, seconds, rate)
        result = await asyncio.to_thread(write_load, *load, None, limit)
        self.next_id += result[2]
        return result

    def written(self) -> dict[str, float]:
        """Events each destination confirmed writing since the process started."""
        return self.pipeline.metric("cdc_events_written_total", "destination")

    async def delivered(self, since: dict[str, float], events: int, within: float) -> None:
        """Until every destination confirmed writing ``events`` more than ``since`` (at most
        ``within`` seconds)."""

        def done() -> bool:
            now = self.written()
            return all(now.get(d, 0) >= since.get(d, 0) + events for d in DESTINATIONS)

        what = f"{events:,} events in every destination"
        await asyncio.to_thread(self.pipeline.wait_until, done, within, what)

    async def caught_up(self, within: float = 900) -> None:
        """Until every destination committed the commit log's durable end (``/status``)."""
        target = await asyncio.to_thread(durable_end, self.cdc_raw)
        await asyncio.to_thread(self.pipeline.wait_caught_up, target, within)

    def stop(self) -> None:
        if self.pipeline.alive():
            self.pipeline.stop()

    async def setup(self) -> None:
        """The pipeline started and one row through."""
        self.pipeline.start()
        self.session.execute(
            self.session.prepare(INSERT.format(ks=self.ks)),
            (-(10**12), "warm-up", None, 0, 0.0, None),
        )
        await self.caught_up(120)

    async def idle_rss(self) -> int:
        """The caught-up agent's RSS after a second with nothing to do, in bytes."""
        await asyncio.sleep(1)
        return agent_usage(self.pipeline.pid).rss

    async def warm_up(self, seconds: float) -> None:
        """Writes at the maximum rate with the pipeline stopped, then its catch-up: what
        the runs do, so that the JIT has compiled Cassandra's write path before any of
        its CPU is measured."""
        self.stop()
        rate, _, rows = await self.write(seconds)
        print(f"  {rows:,} rows at {rate:,.0f} rows/s; the pipeline catching up", flush=True)
        self.pipeline.start()
        await self.caught_up()

    async def solo(self, seconds: float) -> dict[str, Any]:
        """Cassandra alone at its maximum rate: the rate, the rows (the backlog
        :meth:`drain` delivers next) and its CPU per write."""
        self.stop()
        before = cpu_seconds()
        rate, load_cpu, rows = await self.write(seconds)
        used = cpu_seconds()["cassandra"] - before["cassandra"]
        return {
            "rows": rows,
            "rows_per_s": round(rate),
            "cassandra_us_per_write": round(1e6 * used / rows, 1),
            "load_generator_us_per_write": round(1e6 * load_cpu / rows, 1),
        }

    async def drain(self, rows: int, progress: bool = False) -> dict[str, Any]:
        """The stopped pipeline started on ``rows`` written meanwhile: the seconds until
        every destination wrote them all (from the process's start), those until its
        endpoint answered, the agent's CPU per row and peak RSS. ``progress``: a line every
        15 s."""
        started = time.monotonic()
        self.pipeline.start()
        ready = time.monotonic()
        pid = self.pipeline.pid
        with Every(lambda: agent_usage(pid).rss) as rss:
            waiting = asyncio.create_task(self.delivered({}, rows, 3600))
            while progress and not (await asyncio.wait({waiting}, timeout=15))[0]:
                slowest = min((self.written().get(d, 0) for d in DESTINATIONS), default=0)
                peak = max((r for _, r in rss.samples), default=0)
                print(
                    f"  draining: {time.monotonic() - started:.0f} s, {slowest:,.0f} rows in "
                    f"every destination, peak RSS {peak / MIB:.0f} MiB",
                    flush=True,
                )
            await waiting
            seconds, final = time.monotonic() - started, agent_usage(pid)
        await self.caught_up()
        peak = max([final.rss, *(r for _, r in rss.samples)])
        return {
            "rows": rows,
            "seconds": round(seconds, 2),
            "startup_seconds": round(ready - started, 2),
            "rows_per_s": round(rows / seconds),
            "agent_us_per_row": round(1e6 * final.cpu / rows, 1),
            "agent_cpu_percent": round(100 * final.cpu / seconds),
            "agent_peak_rss_mib": round(peak / MIB, 1),
        }

    async def half_load(self, rate: float, seconds: float, markers_below: int) -> dict[str, Any]:
        """The load at ``rate`` with the pipeline streaming: lag per destination, and
        each component's CPU per write from the start until every destination wrote it
        all."""
        markers = Markers(self.session, self.ks, markers_below)
        polling = threading.Event()
        marking = threading.Thread(target=markers.run)
        lags = asyncio.create_task(
            visible_lags(markers, self.pg_dsn, self.ch_url, self.ks, polling)
        )
        pid = self.pipeline.pid
        with Every(lambda: self.pipeline.metric("cdc_lag_seconds", "destination")) as reported:
            since, before, started = self.written(), cpu_seconds(pid), time.monotonic()
            marking.start()
            achieved, load_cpu, rows = await self.write(seconds, rate)
            load_ended = time.monotonic()
            markers.stop.set()
            marking.join()
            writes = rows + len(markers.written)
            await self.delivered(since, writes, 900)
            after, delivered = cpu_seconds(pid), time.monotonic()
            await self.caught_up()
            await asyncio.sleep(0.5)  # the pollers' last look
            polling.set()
            visible = await lags
        used = {name: after[name] - before[name] for name in after}
        used["agent"] = used.pop("pipeline")
        used["load generator"] = load_cpu
        lag = {
            name: spread([v for _, v in seen]) | {"unseen": len(markers.written) - len(seen)}
            for name, seen in visible.items()
        }
        during = [s for at, s in reported.samples if started <= at <= load_ended]
        own = {d: [s[d] for s in during if d in s] for d in DESTINATIONS}
        lag["timescaledb"] = spread(own["ts"])
        return {
            "target_rows_per_s": round(rate),
            "rows_per_s": round(achieved),
            "writes": writes,
            "delivered_after_load_s": round(delivered - load_ended, 2),
            "us_per_write": {name: round(1e6 * cpu / writes, 1) for name, cpu in used.items()},
            "cost_ratio": round(used["agent"] / used["cassandra"], 3),
            "lag_s": lag,
            "lag_reported_by_pipeline_s": {DESTINATIONS[d]: spread(v) for d, v in own.items()},
        }

    async def run(self, n: int, seconds: float, idle_rss: int) -> dict[str, Any]:
        solo = await self.solo(seconds)
        print(
            f"  solo: {solo['rows_per_s']:,} rows/s ({solo['rows']:,} rows), Cassandra "
            f"{solo['cassandra_us_per_write']:.0f} µs/write",
            flush=True,
        )
        catch_up = await self.drain(solo["rows"])
        catch_up["ratio"] = round(catch_up["rows_per_s"] / solo["rows_per_s"], 3)
        catch_up["agent_idle_rss_mib"] = round(idle_rss / MIB, 1)
        catch_up["rss_ratio"] = round(catch_up["agent_peak_rss_mib"] * MIB / idle_rss, 2)
        print(
            f"  catch-up: {catch_up['rows']:,} rows in {catch_up['seconds']:.1f} s (start-up "
            f"{catch_up['startup_seconds']:.1f} s), {catch_up['rows_per_s']:,} rows/s, ratio "
            f"{catch_up['ratio']:.2f}; agent {catch_up['agent_us_per_row']:.0f} µs/row, "
            f"peak RSS {catch_up['agent_peak_rss_mib']:.0f} MiB",
            flush=True,
        )
        half = await self.half_load(solo["rows_per_s"] / 2, seconds, -n * 10**6)
        us, lag = half["us_per_write"], half["lag_s"]
        print(
            f"  50% load ({half['rows_per_s']:,} rows/s): cost ratio {half['cost_ratio']:.2f} "
            f"(agent {us['agent']:.0f} µs/write, Cassandra {us['cassandra']:.0f}); p99 "
            + ", ".join(f"{name} {v['p99']:.2f} s" for name, v in lag.items())
            + " (its own lag)"
            + f"; all delivered {half['delivered_after_load_s']:.1f} s after the load",
            flush=True,
        )
        return {"solo": solo, "catch_up": catch_up, "half_load": half}

    async def rss_backlog(self, rows: int, slice_seconds: float, idle_rss: int) -> dict[str, Any]:
        """The pipeline stopped while ``rows`` are written at the maximum rate, in slices
        of ``slice_seconds`` (a line after each), then its drain: peak RSS over idle."""
        self.stop()
        written, started = 0, time.monotonic()
        while written < rows:
            written += (await self.write(slice_seconds, limit=rows - written))[2]
            print(
                f"  backlog: {written:,} of {rows:,} rows written "
                f"({time.monotonic() - started:.0f} s)",
                flush=True,
            )
        drained = await self.drain(rows, progress=True)
        drained["agent_idle_rss_mib"] = round(idle_rss / MIB, 1)
        drained["rss_ratio"] = round(drained["agent_peak_rss_mib"] * MIB / idle_rss, 2)
        return drained


# ---------------------------------------------------------------------------- report


def cost_ratio(run: dict[str, Any]) -> float:
    return float(run["half_load"]["cost_ratio"])


def catch_up_ratio(run: dict[str, Any]) -> float:
    return float(run["catch_up"]["ratio"])


def p99(name: str) -> Callable[[dict[str, Any]], float]:
    """A run's p99 lag at 50% in the destination ``name``."""
    return lambda run: float(run["half_load"]["lag_s"][name]["p99"])


SUMMARY: list[tuple[str, Callable[[dict[str, Any]], float], str]] = [
    ("solo rate, rows/s", lambda r: r["solo"]["rows_per_s"], ",.0f"),
    ("Cassandra µs/write, solo", lambda r: r["solo"]["cassandra_us_per_write"], ".0f"),
    ("Cassandra µs/write, 50%", lambda r: r["half_load"]["us_per_write"]["cassandra"], ".0f"),
    ("agent µs/write, 50%", lambda r: r["half_load"]["us_per_write"]["agent"], ".0f"),
    ("cost ratio", cost_ratio, ".2f"),
    ("drain rate, rows/s", lambda r: r["catch_up"]["rows_per_s"], ",.0f"),
    ("catch-up ratio", catch_up_ratio, ".2f"),
    ("p99 postgres at 50%, s", p99("postgres"), ".2f"),
    ("p99 clickhouse at 50%, s", p99("clickhouse"), ".2f"),
    ("p99 timescaledb at 50% (own lag), s", p99("timescaledb"), ".2f"),
    ("agent idle RSS, MiB", lambda r: r["catch_up"]["agent_idle_rss_mib"], ".0f"),
    ("agent peak RSS in catch-up, MiB", lambda r: r["catch_up"]["agent_peak_rss_mib"], ".0f"),
    ("RSS ratio in catch-up", lambda r: r["catch_up"]["rss_ratio"], ".2f"),
]


def median(runs: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float:
    return statistics.median(get(run) for run in runs)


def summary(report: dict[str, Any]) -> list[str]:
    """The table of every run and the medians, and each target met or not."""
    runs = report["runs"]
    columns = [f"run {n}" for n in range(1, len(runs) + 1)]
    lines = [f"{'':38}" + "".join(f"{c:>10}" for c in [*columns, "median"])]
    for label, get, spec in SUMMARY:
        cells = [get(run) for run in runs] + [median(runs, get)]
        lines.append(f"{label:38}" + "".join(f"{format(v, spec):>10}" for v in cells))
    p99_target = report["p99_target_s"]
    checks = [
        ("cost ratio", median(runs, cost_ratio), "<=", 0.25),
        ("catch-up ratio", median(runs, catch_up_ratio), ">=", 1.5),
        ("p99 at 50%, worst destination, s", worst_p99(runs), "<", p99_target),
    ]
    if "rss_backlog" in report:
        factor = report["settings"]["rss_backlog_factor"]
        checks.append(
            (f"RSS ratio, {factor:g}x backlog", report["rss_backlog"]["rss_ratio"], "<=", 2.0)
        )
    lines.append("targets (issue 16):")
    for label, value, op, bound in checks:
        met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]
        lines.append(f"  {label:36} {value:8.2f} {op} {bound:<5g} {'met' if met else 'NOT met'}")
    return lines


def worst_p99(runs: list[dict[str, Any]]) -> float:
    """The worst destination's median p99."""
    return max(median(runs, p99(name)) for name in DESTINATIONS.values())


# ---------------------------------------------------------------------------- run


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20, help="solo and 50%% phases")
    parser.add_argument("--warmup-seconds", type=float, default=10)
    parser.add_argument(
        "--rss-backlog-factor",
        type=float,
        default=10,
        help="the RSS backlog in solo phases' rows (0: no RSS phase)",
    )
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument(
        "--max-batch-events", type=int, default=1000, help="the product's default: 1000"
    )
    parser.add_argument(
        "--max-batch-delay-ms", type=int, default=200, help="the product's default: 200"
    )
    parser.add_argument(
        "--reader-process",
        action="store_true",
        help="source.reader_process: the commit log reader in a child process",
    )
    parser.add_argument(
        "--sync-period-ms",
        type=float,
        help="commit log sync period (default: the running node's cassandra.yaml)",
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


async def main() -> None:
    args = _arguments()
    hosts = env("CDC_TEST_CASSANDRA_HOSTS")
    live = Path(env("CDC_TEST_CASSANDRA_CDC_RAW_DIR"))
    pg_dsn, ch_url = env("CDC_TEST_POSTGRES_DSN"), env("CDC_TEST_CLICKHOUSE_URL")
    ts_dsn = env("CDC_TEST_TIMESCALEDB_DSN")
    sync_ms, sync_from = sync_period_ms(args.sync_period_ms)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "sync_period_ms"},
        "commit_log_sync_period_ms": sync_ms,
        "p99_target_s": round(sync_ms / 1000 + 1, 3),
        "load_average": {"start": load_average()},
    }
    print(f"load average at start: {report['load_average']['start']}")
    print(
        f"commit log sync period {sync_ms:g} ms ({sync_from}); "
        f"p99 target: sync period + 1 s = {report['p99_target_s']:g} s",
        flush=True,
    )
    ks = f"bench_e2e_{os.urandom(3).hex()}"
    cluster = connect(hosts)
    session = cluster.connect()
    session.execute(
        f"CREATE KEYSPACE {ks} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.execute(TABLE.format(ks=ks))
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    pipeline = _pipeline(ks, hosts, pg_dsn, ch_url, ts_dsn, workdir, args)
    bench = Bench(
        session, ks, hosts, pg_dsn, ch_url, pipeline, workdir / "cdc_raw", args.concurrency
    )
    try:
        connection = await asyncpg.connect(ts_dsn)  # its schema, before the pipeline connects
        await connection.execute(f'CREATE SCHEMA "{ks}"')
        await connection.close()
        with CdcRawLinks(live, [workdir / "cdc_raw"]):
            try:
                await _phases(bench, args, report)
            finally:
                bench.stop()
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        cluster.shutdown()
        await drop_schemas(pg_dsn, ts_dsn, ch_url, ks)
    report["load_average"]["end"] = load_average()
    print(f"load average at the end: {report['load_average']['end']}")
    print(json.dumps(report, indent=2))
    print("\n".join(summary(report)))
    runs = report["runs"]
    print(
        f"cost ratio: {median(runs, cost_ratio):.2f}, "
        f"catch-up ratio: {median(runs, catch_up_ratio):.2f}, "
        f"p99 at 50%: {worst_p99(runs):.2f} s"
    )


def _pipeline(
    ks: str,
    hosts: str,
    pg_dsn: str,
    ch_url: str,
    ts_dsn: str,
    workdir: Path,
    args: argparse.Namespace,
) -> Pipeline:
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
        max_batch_events=args.max_batch_events,
        max_batch_delay_ms=args.max_batch_delay_ms,
        reader_process=args.reader_process,
    )
    settings["logging"]["level"] = "warning"
    # The shared database keeps every run's offsets: this run's go with its own tables.
    settings["destinations"][0]["metadata_schema"] = ks
    return Pipeline(write_config(workdir / "cdc.yaml", settings), port, workdir / "run.log")


async def _phases(bench: Bench, args: argparse.Namespace, report: dict[str, Any]) -> None:
    print("setup: the pipeline started, one row through", flush=True)
    await bench.setup()
    idle_rss = await bench.idle_rss()
    report["agent_idle_rss_mib"] = round(idle_rss / MIB, 1)
    print(f"  agent idle RSS {idle_rss / MIB:.0f} MiB", flush=True)
    if args.warmup_seconds:
        print(f"warm-up: {args.warmup_seconds:g} s at Cassandra's maximum rate", flush=True)
        await bench.warm_up(args.warmup_seconds)
        after = await bench.idle_rss()
        report["agent_idle_rss_after_warm_up_mib"] = round(after / MIB, 1)
        print(
            f"  agent idle RSS after that catch-up {after / MIB:.0f} MiB (its allocator's "
            "high-water mark: the RSS ratios are over the fresh process's)",
            flush=True,
        )
    report["runs"] = []
    for n in range(1, args.runs + 1):
        average = load_average()
        print(f"run {n}/{args.runs} (load average {average})", flush=True)
        run = await bench.run(n, args.seconds, idle_rss)
        report["runs"].append({"load_average": average, **run})
    if args.rss_backlog_factor:
        rows = round(args.rss_backlog_factor * median(report["runs"], lambda r: r["solo"]["rows"]))
        print(
            f"RSS under a {args.rss_backlog_factor:g}x backlog: {rows:,} rows with the "
            "pipeline stopped, then its drain (long)",
            flush=True,
        )
        drained = await bench.rss_backlog(rows, args.seconds, idle_rss)
        report["rss_backlog"] = drained
        print(
            f"  {drained['rows']:,} rows drained in {drained['seconds']:.0f} s; peak RSS "
            f"{drained['agent_peak_rss_mib']:.0f} MiB / idle {idle_rss / MIB:.0f} MiB = "
            f"{drained['rss_ratio']:.2f}",
            flush=True,
        )


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
