"""``kill -9`` of the pipeline while it snapshots, three times, a workload writing all
along: each restart resumes the same run and reads only the ranges the recorded
progress says are unfinished (finished ones are never read again), and the result is
what Cassandra holds, in every destination."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end
from tests.integration.e2e.snapshot_checks import (
    Range,
    done_everywhere,
    ranges_done_here,
    ranges_read,
    recorded,
    snapshot_state,
)
from tests.integration.e2e.snapshot_data import Preload, SnapshotWorkload
from tests.integration.e2e.workload import Writer

ROWS = 40_000
KILLS = 3
SETTINGS = {"min_ranges": 48, "concurrency": 2}


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
            runs: dict[str, set[str | None]] = {}  # per destination (each planned alone)
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
                for name, tables in progress.items():
                    runs.setdefault(name, set()).update(p.run for p in tables.values())
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
            await asyncio.sleep(3)  # pacing: the workload goes on after the snapshot a while
        finally:
            stop_writing.set()
            thread.join()
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw), timeout=300)
        assert pipeline.stop() == 0, pipeline.tail()
    assert pipeline.starts == KILLS + 1
    progress = await recorded(stack)
    assert all(p.finished for tables in progress.values() for p in tables.values())
    # Each restart resumed each destination's run.
    assert {name: len(found) for name, found in runs.items()} == dict.fromkeys(progress, 1)
    assert await stack.history_problems() == {}
    await stack.assert_mirrors_equal()
    assert await stack.history_differences() == {}
    assert stack.dead_letters() == []
