"""``kill -9`` of the pipeline while it snapshots, three times, a workload writing all
along: each restart resumes the same run and reads only the ranges the recorded
progress says are unfinished (finished ones are never read again), and the result is
what Cassandra holds, in every destination."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from cdc_adapters.local import SqliteOffsetStore, SystemClock
from cdc_adapters.postgres import PostgresOffsetStore, create_pool
from cdc_domain.ports import OffsetStore
from cdc_domain.snapshot_progress import SnapshotProgress, TableProgress
from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import Pipeline, durable_end
from tests.integration.e2e.snapshot_data import Preload, SnapshotWorkload
from tests.integration.e2e.workload import Writer

ROWS = 40_000
KILLS = 3
SETTINGS = {"min_ranges": 48, "concurrency": 2}

Range = tuple[str, str]  # (table, "start:end")


async def recorded(stack: Stack) -> dict[str, dict[str, TableProgress]]:
    """Each destination's snapshot progress as its store holds it (no pipeline runs)."""
    stores: dict[str, OffsetStore] = {
        "pg": PostgresOffsetStore(dsn=stack.postgres_dsn, schema="public"),
        "ch": SqliteOffsetStore(str(stack.workdir / "offsets.db"), SystemClock()),
    }
    progress = SnapshotProgress("node1")
    found = {}
    try:
        for name, store in stores.items():
            found[name] = await progress.load(store, name)
    finally:
        for store in stores.values():
            await store.aclose()
    pool = await create_pool(stack.timescaledb_dsn, min_size=1, max_size=1)
    try:
        store = PostgresOffsetStore(pool=pool, schema=stack.timescaledb_schema)
        found["ts"] = await progress.load(store, "ts")
    finally:
        await pool.close()
    return found


def done_everywhere(progress: dict[str, dict[str, TableProgress]]) -> set[Range]:
    """Ranges every destination has recorded as finished."""
    per_destination = [
        {(t, str(r)) for t, p in tables.items() for r in p.ranges} for tables in progress.values()
    ]
    return set.intersection(*per_destination)


def ranges_read(log: Path, since: int) -> list[Range]:
    """The ranges a pipeline started reading, from its log after byte ``since``."""
    found = []
    with log.open("rb") as handle:
        handle.seek(since)
        for line in handle.read().decode(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("event") == "snapshot range read":
                found.append((record["table"], record["token_range"]))
    return found


def ranges_done_here(pipeline: Pipeline) -> int:
    answer = pipeline.get("/snapshot")
    snapshot = None if answer is None else answer.get("snapshot")
    return 0 if snapshot is None else sum(t["ranges"]["done"] for t in snapshot["tables"])


def snapshot_state(pipeline: Pipeline) -> str | None:
    answer = pipeline.get("/snapshot")
    snapshot = None if answer is None else answer.get("snapshot")
    return None if snapshot is None else str(snapshot["state"])


@pytest.mark.timeout(900)  # 101 s measured (2 cores shared with other test runs)
async def test_kill_9_during_the_snapshot_resumes_with_only_unfinished_ranges(
    stack: Stack,
) -> None:
    preload = Preload(stack.keyspace, ROWS, seed=3)
    preload.create(stack.session)
    preload.load(stack.session)
    workload = SnapshotWorkload(preload, seed=5)
    writer = Writer(stack.session)
    snapshot_done = threading.Event()
    stop_writing = threading.Event()

    def write() -> None:
        while not stop_writing.is_set():
            writer.run(workload.after() if snapshot_done.is_set() else workload.during())
            time.sleep(0.2)

    with stack.links():
        pipeline = stack.pipeline(snapshot="initial", snapshot_settings=SETTINGS)
        thread = threading.Thread(target=write, name="workload")
        thread.start()
        try:
            finished: set[Range] = set()
            runs: set[str | None] = set()
            for kill in range(KILLS):
                since = pipeline.log.stat().st_size if pipeline.log.exists() else 0
                pipeline.start()
                enough = 6 + 4 * kill
                pipeline.wait_until(
                    lambda enough=enough: ranges_done_here(pipeline) >= enough, 120, "ranges read"
                )
                pipeline.kill()
                read = ranges_read(pipeline.log, since)
                assert read, pipeline.tail()
                assert not set(read) & finished, "a range finished before was read again"
                progress = await recorded(stack)
                runs |= {p.run for tables in progress.values() for p in tables.values()}
                now_finished = done_everywhere(progress)
                assert finished < now_finished  # every kill leaves more recorded
                assert not all(p.finished for t in progress.values() for p in t.values())
                finished = now_finished
            since = pipeline.log.stat().st_size
            pipeline.start()
            pipeline.wait_until(lambda: snapshot_state(pipeline) == "finished", 300, "the end")
            read = ranges_read(pipeline.log, since)
            assert not set(read) & finished, "a range finished before was read again"
            snapshot_done.set()
            await asyncio.sleep(3)
        finally:
            stop_writing.set()
            thread.join()
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw), timeout=300)
        assert pipeline.stop() == 0, pipeline.tail()
    assert pipeline.starts == KILLS + 1
    progress = await recorded(stack)
    assert all(p.finished for tables in progress.values() for p in tables.values())
    assert len(runs) == 1  # each restart resumed the same run
    assert await stack.history_problems() == {}
    await stack.assert_mirrors_equal()
    assert await stack.history_differences() == {}
    assert stack.dead_letters() == []
