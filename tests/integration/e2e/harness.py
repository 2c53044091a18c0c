"""Running ``cdc-app run`` as a real process against the real services, in tests and benches.

The pipeline is a subprocess so that ``kill -9`` and SIGTERM are the real thing. It reads
a private copy of the node's ``cdc_raw`` (:class:`CdcRawLinks`): the live directory is
shared with every other test on the machine, and the pipeline deletes what it consumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from cdc_adapters.cassandra.cdc_directory import list_segments
from cdc_adapters.cassandra.segment import parse_segment_name, read_cdc_index

REPO_ROOT = Path(__file__).resolve().parents[3]
CDC_APP = Path(sys.executable).parent / "cdc-app"

Position = tuple[int, int, int]


def parse_position(text: str | None) -> Position | None:
    """``"segment:offset:index"`` as ``/status`` prints a position."""
    if not text:
        return None
    segment, offset, index = text.split(":")
    return int(segment), int(offset), int(index)


class CdcRawLinks:
    """Hard links to the live ``cdc_raw`` segments, kept up to date by a thread.

    Only segments Cassandra may still write (and newer ones) are linked, so the copies
    hold this test's writes and little else. A hard link shares the file: the linked
    segment grows and its idx (rewritten in place) moves on as Cassandra writes them.
    Each name is linked once, so what the pipeline deletes from its copy stays deleted.
    Several ``targets`` get the same links: a pipeline's, and a reference copy that
    nothing deletes from, which an independent reader counts the captured events in.
    """

    def __init__(self, live: Path, targets: Sequence[Path], interval: float = 0.02) -> None:
        self.live = live
        self.targets = tuple(targets)
        for target in self.targets:
            target.mkdir(parents=True, exist_ok=True)
        self._from_id = _first_open_segment(live)
        self._linked: set[str] = set()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cdc_raw links", daemon=True)

    def __enter__(self) -> CdcRawLinks:
        self.sync()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def sync(self) -> None:
        for name in sorted(os.listdir(self.live)):
            parsed = parse_segment_name(name.replace("_cdc.idx", ".log"))
            if parsed is None or parsed[1] < self._from_id or name in self._linked:
                continue
            try:
                for target in self.targets:
                    os.link(self.live / name, target / name)
            except FileNotFoundError:
                continue
            except FileExistsError:
                pass
            self._linked.add(name)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sync()


def _first_open_segment(live: Path) -> int:
    completed, open_ids = [0], []
    for log in live.glob("CommitLog-*.log"):
        parsed = parse_segment_name(log.name)
        if parsed is None:
            continue
        index = read_cdc_index(log.with_name(log.name.replace(".log", "_cdc.idx")))
        (completed if index is not None and index.completed else open_ids).append(parsed[1])
    newest_completed = max(completed)
    return min((i for i in open_ids if i > newest_completed), default=newest_completed + 1)


def durable_end(directory: Path, settle: float = 0.5) -> Position:
    """How far the commit log is durable now: a position every destination must reach to
    hold everything written before this call. Cassandra acknowledges a write before the
    periodic sync (50 ms here) records it in the idx, hence ``settle``."""
    time.sleep(settle)
    segments = [s for s in list_segments(directory) if s.index is not None]
    if not segments:
        return (0, 0, -1)
    newest = segments[-1]
    assert newest.index is not None
    return (newest.segment_id, newest.index.offset, -1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_config(path: Path, settings: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(settings), sort_keys=False))
    return path


def pipeline_settings(
    *,
    workdir: Path,
    cdc_raw_dir: Path,
    keyspace: str,
    cassandra_hosts: str,
    postgres_dsn: str | None,
    clickhouse_url: str | None,
    clickhouse_prefix: str,
    timescaledb_dsn: str | None,
    timescaledb_schema: str,
    port: int,
    max_batch_events: int = 2000,
    max_batch_delay_ms: int = 50,
    shutdown_timeout_s: int = 30,
    snapshot: str = "never",
    snapshot_settings: Mapping[str, Any] | None = None,
    reader_process: bool = False,
) -> dict[str, Any]:
    """A configuration streaming ``keyspace.*`` into the destinations whose database is
    given (names pg, ch, ts). TimescaleDB keeps its tables and offsets in one schema: the
    server is one database shared by every test. ``snapshot`` is ``source.snapshot``,
    ``snapshot_settings`` the ``snapshot`` section, ``reader_process`` the source's."""
    destinations: list[dict[str, Any]] = []
    settings: dict[str, Any] = {
        "source": {
            "type": "cassandra",
            "partition_id": "node1",
            "tables": [f"{keyspace}.*"],
            "snapshot": snapshot,
            "reader_process": reader_process,
        },
        "cassandra": {"hosts": cassandra_hosts.split(","), "cdc_raw_dir": str(cdc_raw_dir)},
    }
    if postgres_dsn is not None:
        settings["postgres"] = {"dsn": postgres_dsn}
        destinations.append({"name": "pg", "type": "postgres"})
    if clickhouse_url is not None:
        settings["clickhouse"] = {"url": clickhouse_url}
        destinations.append(
            {"name": "ch", "type": "clickhouse", "database_prefix": clickhouse_prefix}
        )
    if timescaledb_dsn is not None:
        settings["timescaledb"] = {"dsn": timescaledb_dsn}
        destinations.append(
            {
                "name": "ts",
                "type": "timescaledb",
                "schema": timescaledb_schema,
                "metadata_schema": timescaledb_schema,
            }
        )
    settings |= {
        "destinations": destinations,
        "offsets": {"type": "sqlite", "path": str(workdir / "offsets.db")},
        "dead_letters": {"type": "jsonl", "path": str(workdir / "dead_letters.jsonl")},
        "schema_history": {"type": "jsonl", "path": str(workdir / "schema_history.jsonl")},
        "masking": {"hmac_key": "e2e-test-key"},
        "pipeline": {
            "max_batch_events": max_batch_events,
            "max_batch_delay_ms": max_batch_delay_ms,
            "retry_initial_ms": 200,
            "retry_max_ms": 2000,
            "shutdown_timeout_s": shutdown_timeout_s,
        },
        "snapshot": dict(snapshot_settings or {}),
        "health": {"port": port},
        "logging": {"format": "json", "level": "info"},
    }
    return settings


class Pipeline:
    """One ``cdc-app run --config`` process at a time; its output goes to ``log``."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait_ready: bool = True) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(CDC_APP), "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.config.parent,
            )
        self.starts += 1
        if wait_ready:
            self.wait_until(lambda: self.get("/health/live") is not None, 60, "the endpoint")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> set[int]:
        """The running process's children (a reader process, multiprocessing's helper)."""
        found: set[int] = set()
        for listing in Path(f"/proc/{self.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found.update(int(pid) for pid in listing.read_text().split())
        return found

    def kill(self) -> None:
        """``kill -9``: no flush, no commit, no goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code (the process is killed if it overruns)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def get(self, path: str) -> Any | None:
        """The endpoint's JSON answer at ``path`` (any HTTP status), None when nothing answers."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())
        except (OSError, ValueError):
            return None

    def metric(self, name: str, by: str) -> dict[str, float]:
        """The samples of ``name`` on ``/metrics``, summed by the label ``by`` (empty when
        nothing answers)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return {}
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    key = sample.labels.get(by, "")
                    totals[key] = totals.get(key, 0.0) + sample.value
        return totals

    def positions(self) -> dict[str, Position | None]:
        answer = self.get("/status")
        if answer is None:
            return {}
        return {d["name"]: parse_position(d["position"]) for d in answer["destinations"]}

    def wait_until(
        self, done: Callable[[], bool], timeout: float, what: str, poll: float = 0.1
    ) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if not self.alive():
                raise AssertionError(f"the pipeline exited while waiting for {what}: {self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:.0f} s: {self.tail()}")
            time.sleep(poll)

    def wait_caught_up(self, target: Position, timeout: float = 180, poll: float = 0.1) -> None:
        """Until every destination has committed ``target`` (see :func:`durable_end`),
        asking every ``poll`` seconds."""

        def caught_up() -> bool:
            positions = self.positions()
            return bool(positions) and all(
                p is not None and p >= target for p in positions.values()
            )

        self.wait_until(caught_up, timeout, f"every destination at {target}", poll)

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(["", *text.splitlines()[-lines:]])


def run_cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Another ``cdc-app`` command on the same configuration, e.g. ``dlq replay``."""
    return subprocess.run(
        [str(CDC_APP), *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
        check=False,
    )
