"""A cluster: three Cassandra nodes with replication factor 3, one ``cdc-app run`` per node,
all three streaming into PostgreSQL, ClickHouse and TimescaleDB (issue 13).

    CDC_CASSANDRA_NODES=3 scripts/services up && eval "$(scripts/services env)"
    .venv/bin/python bench/cluster.py [--seconds 30] [--rate 1000] [--concurrency 64]

1. Cassandra alone: the load generator (prepared INSERTs at ``QUORUM`` through
   cassandra-driver's ``execute_concurrent``, in a process of its own) writes as fast as
   the cluster takes them for ``--seconds``: its rate and its own CPU per write.
2. The three agents streaming while the load writes at ``--rate`` rows/s for
   ``--seconds`` (default: as fast as Cassandra takes them): Cassandra's write rate, the
   events each agent read, the replica copies the history absorbed, the events each
   destination was delivered (by all agents), write-to-visible lag (a marker row every
   100 ms, first seen in PostgreSQL's mirror and ClickHouse's current state; TimescaleDB
   serves one connection here, so its lag is the agents' own ``cdc_lag_seconds``),
   CPU and RSS per component from /proc. Every write is in three commit logs, so every
   agent reads every write: the agents' CPU per Cassandra write is the fleet's cost,
   reported beside Cassandra's own CPU per write, measured over the same seconds.

Components are found by pid: the services' pid files under ``.services/`` (and their
children), the agents' processes, the load generator's own count; other services on a
shared machine are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from bench.e2e import (
    CLOCK_TICKS,
    INSERT,
    PAGE,
    TABLE,
    Markers,
    connect,
    drop_schemas,
    env,
    percentile,
    visible_lags,
    write_load,
)
from tests.integration.cluster.stack import TIMESCALEDB_TURNS
from tests.integration.e2e.harness import (
    CdcRawLinks,
    Pipeline,
    free_port,
    pipeline_settings,
    write_config,
)

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / ".services"


# ---------------------------------------------------------------------------- /proc


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(proc.name))
    return children


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def service_pids() -> dict[str, int]:
    """Each service's main pid, from the pid files ``scripts/services`` keeps."""
    found = {}
    for pid_file in sorted(SERVICES.glob("*/*.pid")) + sorted(SERVICES.glob("*/*/*.pid")):
        if pid_file.parent.name == "data":
            continue  # postmaster.pid: the pid file of the service itself is one up
        try:
            found[pid_file.stem] = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return found


def _usage(pids: list[int]) -> tuple[float, int]:
    """CPU seconds and RSS bytes of these processes together."""
    cpu, rss = 0.0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        rss += int(fields[21]) * PAGE
    return cpu, rss


class Components:
    """The processes of each component: services (with their children) and agents."""

    def __init__(self, agents: dict[str, Pipeline]) -> None:
        self.services = service_pids()
        self.agents = agents

    def usage(self) -> dict[str, tuple[float, int]]:
        children = _children()
        found = {name: _usage(_tree(pid, children)) for name, pid in self.services.items()}
        for name, pipeline in self.agents.items():
            if pipeline.alive():
                found[name] = _usage([pipeline.pid])
        return found


class Sampler:
    """Every 200 ms: each agent's ``/metrics`` and every component's CPU and RSS."""

    def __init__(self, components: Components) -> None:
        self.components = components
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            metrics = {
                name: _metrics(pipeline.port) for name, pipeline in self.components.agents.items()
            }
            self.samples.append(
                {"at": time.monotonic(), "usage": self.components.usage(), "metrics": metrics}
            )


def _metrics(port: int) -> dict[str, dict[str, float]]:
    """An agent's events read, written (per destination), copies absorbed, lag."""
    wanted = {
        "cdc_events_read_total": "read",
        "cdc_events_written_total": "written",
        "cdc_replica_copies_absorbed_total": "absorbed",
        "cdc_lag_seconds": "lag",
    }
    found: dict[str, dict[str, float]] = {key: {} for key in wanted.values()}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return found
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = wanted.get(sample.name)
            if key is not None:
                label = sample.labels.get("destination", "all")
                found[key][label] = found[key].get(label, 0.0) + sample.value
    return found


# ---------------------------------------------------------------------------- run


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, help="rows/s with the agents running")
    args = parser.parse_args()
    hosts = env("CDC_TEST_CASSANDRA_NODES").split(",")
    raw_dirs = [Path(d) for d in env("CDC_TEST_CASSANDRA_CDC_RAW_DIRS").split(",")]
    pg_dsn, ch_url = env("CDC_TEST_POSTGRES_DSN"), env("CDC_TEST_CLICKHOUSE_URL")
    ts_dsn = env("CDC_TEST_TIMESCALEDB_DSN")
    ks = f"bench_cluster_{os.urandom(3).hex()}"
    cluster = connect(",".join(hosts), "QUORUM")
    session = cluster.connect()
    session.execute(
        f"CREATE KEYSPACE {ks} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 3}"
    )
    session.execute(TABLE.format(ks=ks))
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    report: dict[str, Any] = {
        "nodes": len(hosts),
        "replication_factor": 3,
        "consistency": "QUORUM",
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "rate_limit_with_agents": args.rate,
        "load_average_before": os.getloadavg(),
    }
    load = (",".join(hosts), ks, args.concurrency)
    try:
        print(f"[1/3] Cassandra alone for {args.seconds:g} s ...", flush=True)
        components = Components({})
        before, started = components.usage(), time.monotonic()
        alone, load_cpu, rows = write_load(*load, 10**9, args.seconds, None, "QUORUM")
        report["alone"] = _cpu(before, components.usage(), load_cpu, time.monotonic() - started,
                               rows)  # fmt: skip
        report["alone"]["cassandra_rows_per_s"] = round(alone)
        print(f"      {round(alone):,} rows/s", flush=True)
        agents = _agents(ks, hosts, raw_dirs, pg_dsn, ch_url, ts_dsn, workdir)
        await _schemas(pg_dsn, ts_dsn, ks)
        with contextlib.ExitStack() as links:
            for n, raw in enumerate(raw_dirs, start=1):
                links.enter_context(CdcRawLinks(raw, [workdir / f"node{n}" / "cdc_raw"]))
            await _with_agents(session, ks, load, agents, raw_dirs, workdir, pg_dsn, ch_url, args,
                               report)  # fmt: skip
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        cluster.shutdown()
        await drop_schemas(pg_dsn, ts_dsn, ch_url, ks)
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


def _agents(
    ks: str, hosts: list[str], raw_dirs: list[Path], pg_dsn: str, ch_url: str, ts_dsn: str,
    workdir: Path,
) -> dict[str, Pipeline]:  # fmt: skip
    """One agent per node: its own ``cdc_raw``, ``partition_id``, port, its node first."""
    agents = {}
    for n, host in enumerate(hosts, start=1):
        home = workdir / f"node{n}"
        health = free_port()
        settings = pipeline_settings(
            workdir=home,
            cdc_raw_dir=home / "cdc_raw",
            keyspace=ks,
            cassandra_hosts=",".join([host, *(h for h in hosts if h != host)]),
            postgres_dsn=pg_dsn,
            clickhouse_url=ch_url,
            clickhouse_prefix="",
            timescaledb_dsn=ts_dsn,
            timescaledb_schema=ks,
            port=health,
            max_batch_events=5000,
            # Above pool_idle_s: an agent with nothing new gives TimescaleDB's one
            # connection back between its polls.
            max_batch_delay_ms=200,
        )
        settings["source"]["partition_id"] = f"node{n}"
        settings["timescaledb"] |= TIMESCALEDB_TURNS
        settings["logging"]["level"] = "warning"
        # The shared database keeps every run's offsets: this run's go with its own tables.
        settings["destinations"][0]["metadata_schema"] = ks
        config = write_config(home / "cdc.yaml", settings)
        agents[f"agent{n}"] = Pipeline(config, health, home / "run.log")
    return agents


async def _schemas(pg_dsn: str, ts_dsn: str, ks: str) -> None:
    for dsn in (pg_dsn, ts_dsn):
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{ks}"')
        finally:
            await connection.close()


async def _with_agents(
    session: Any,
    ks: str,
    load: tuple[Any, ...],
    agents: dict[str, Pipeline],
    raw_dirs: list[Path],
    workdir: Path,
    pg_dsn: str,
    ch_url: str,
    args: argparse.Namespace,
    report: dict[str, Any],
) -> None:
    for agent in agents.values():
        agent.start()

    def caught_up(timeout: float) -> None:
        """Until every agent has delivered, to every destination, all it read and reads
        nothing new for 3 s. From ``/metrics``: ``/status`` reads each destination's
        offsets, a turn on the one-connection TimescaleDB for every question."""
        deadline, quiet_since, last = time.monotonic() + timeout, time.monotonic(), None
        while time.monotonic() < deadline:
            now = {name: _metrics(agent.port) for name, agent in agents.items()}
            read = {name: m["read"].get("all", 0.0) for name, m in now.items()}
            done = all(
                m["written"] and all(w == read[name] for w in m["written"].values())
                for name, m in now.items()
            )
            if read != last:
                last, quiet_since = read, time.monotonic()
            if done and time.monotonic() - quiet_since >= 3:
                return
            time.sleep(0.5)
        raise TimeoutError(f"the agents did not catch up within {timeout:.0f} s")

    try:
        # One row through first: each destination creates its tables on its first batch,
        # a one-off that belongs to no steady state.
        session.execute(
            session.prepare(INSERT.format(ks=ks)), (-(10**12), "warm-up", None, 0, 0.0, None)
        )
        await asyncio.to_thread(caught_up, 300)
        print(f"[2/3] the load with three agents streaming, {args.seconds:g} s ...", flush=True)
        components = Components(agents)
        markers, sampler = Markers(session, ks), Sampler(components)
        polling = threading.Event()
        threads = [threading.Thread(target=markers.run), threading.Thread(target=sampler.run)]
        for thread in threads:
            thread.start()
        lags = asyncio.create_task(visible_lags(markers, pg_dsn, ch_url, ks, polling))
        before, started = components.usage(), time.monotonic()
        rate, load_cpu, rows = await asyncio.to_thread(
            write_load, *load, 0, args.seconds, args.rate, "QUORUM"
        )
        load_ended = time.monotonic()
        after = components.usage()
        markers.stop.set()
        print("[3/3] waiting for the destinations to catch up ...", flush=True)
        await asyncio.to_thread(caught_up, 900)
        caught = time.monotonic()
        await asyncio.sleep(0.5)
        polling.set()
        sampler.stop.set()
        for thread in threads:
            thread.join()
        visible = await lags
    finally:
        for agent in agents.values():
            if agent.alive():
                agent.stop()
    wall = load_ended - started
    report["with_agents"] = _cpu(before, after, load_cpu, wall, rows)
    report["with_agents"]["cassandra_rows_per_s"] = round(rate)
    report["with_agents"]["rows_written"] = rows
    report["catch_up_after_load_s"] = round(caught - load_ended, 1)
    _summarise(report, sampler.samples, visible, load_ended, rows + len(markers.written))


def _cpu(
    before: dict[str, tuple[float, int]],
    after: dict[str, tuple[float, int]],
    load_cpu: float,
    wall: float,
    rows: int,
) -> dict[str, Any]:
    """Per component: % of one core over ``wall`` and microseconds of CPU per row written;
    Cassandra's nodes and the agents also in total, side by side."""
    used = {name: after[name][0] - before[name][0] for name in after if name in before}
    used["load generator"] = load_cpu
    cassandra = sum(cpu for name, cpu in used.items() if name.startswith("cassandra"))
    agents = sum(cpu for name, cpu in used.items() if name.startswith("agent"))
    per_component = {
        name: {"core_percent": round(100 * cpu / wall), "us_per_row": round(1e6 * cpu / rows)}
        for name, cpu in sorted(used.items())
    }
    summary: dict[str, Any] = {
        "cpu": per_component,
        "cassandra_cpu_us_per_write": round(1e6 * cassandra / rows),
    }
    if agents:
        summary["agents_cpu_us_per_write"] = round(1e6 * agents / rows)
        summary["agents_cores_per_1000_writes_per_s"] = round(1000 * agents / rows, 3)
    return summary


def _summarise(
    report: dict[str, Any],
    samples: list[dict[str, Any]],
    visible: dict[str, list[tuple[float, float]]],
    load_ended: float,
    writes: int,
) -> None:
    end = samples[-1]["metrics"]
    report["events_read_per_agent"] = {
        name: round(m["read"].get("all", 0)) for name, m in end.items()
    }
    delivered: dict[str, float] = {}
    for m in end.values():
        for destination, count in m["written"].items():
            delivered[destination] = delivered.get(destination, 0) + count
    report["events_delivered_per_destination"] = {d: round(n) for d, n in sorted(delivered.items())}
    absorbed = sum(sum(m["absorbed"].values()) for m in end.values())
    report["replica_copies_absorbed"] = round(absorbed)
    report["cassandra_writes_incl_markers"] = writes
    report["lag_write_to_visible_s"] = {
        name: {"p50": round(percentile(lags, 0.5), 3), "p99": round(percentile(lags, 0.99), 3),
               "markers": len(lags)}
        for name, v in visible.items()
        if (lags := [lag for _, lag in v]) is not None
    }  # fmt: skip
    during = [s for s in samples if s["at"] <= load_ended]
    reported: dict[str, list[float]] = {}
    for sample in during:
        for m in sample["metrics"].values():
            for destination, lag in m["lag"].items():
                reported.setdefault(destination, []).append(lag)
    report["lag_reported_by_agents_s"] = {
        d: {"p50": round(percentile(v, 0.5), 3), "p99": round(percentile(v, 0.99), 3)}
        for d, v in sorted(reported.items())
    }
    names = sorted({name for s in during for name in s["usage"]})
    report["rss_mib"] = {
        name: {
            "median": round(statistics.median(rss) / 2**20),
            "peak": round(max(rss) / 2**20),
        }
        for name in names
        if (rss := [s["usage"][name][1] for s in during if name in s["usage"]])
    }


if __name__ == "__main__":
    asyncio.run(main())
