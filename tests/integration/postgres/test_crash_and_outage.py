"""Exactly-once under crashes, and a server outage mid-stream (PostgreSQL)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from cdc_adapters.postgres import PostgresOffsetStore, PostgresSink
from cdc_domain.errors import TransientError
from cdc_domain.health import HealthStatus
from tests.integration.postgres.conftest import FAST_RETRY, fresh_names
from tests.integration.postgres.crash_driver import (
    DESTINATION,
    PARTITION,
    Round,
    batches,
    deliver_with_crashes,
    stream,
)
from tests.integration.postgres.mirror_model import ITEMS, QUALIFIED, reference
from tests.integration.services import SERVICES_SCRIPT
from tests.support.waiting import eventually


@pytest.fixture
def names():
    return fresh_names()


def sink_factory(pool, names, **options):
    async def make():
        return PostgresSink(
            name=DESTINATION,
            pool=pool,
            schema=names[0],
            metadata_schema=names[1],
            retry=FAST_RETRY,
            **options,
        )

    return make


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_killed_writers_lose_nothing_and_repeat_nothing(pg_pool, names, seed):
    events = stream(400, seed)
    offsets = PostgresOffsetStore(pool=pg_pool, schema=names[1])

    async def check(sink, delivered):
        assert await sink.rows(ITEMS) == reference(events[:delivered])

    make_sink = sink_factory(pg_pool, names)

    async def new_round():
        return Round(await make_sink(), offsets)

    crashes = await deliver_with_crashes(new_round, events, size=25, seed=seed, check=check)
    assert crashes > 0
    record = await offsets.load(DESTINATION, PARTITION)
    assert record.events_processed == len(events)


async def test_a_writer_killed_between_its_rows_and_its_offset_commits_neither(pg_pool, names):
    """The offset row is locked by another transaction, so the writer has written its
    rows and waits on the offset upsert when it is killed."""
    events = stream(40, 9)
    first, second = batches(events, 20)
    sink = await sink_factory(pg_pool, names)()
    await sink.write(first)
    async with pg_pool.acquire() as blocker, blocker.transaction():
        await blocker.execute(
            f'SELECT * FROM "{names[1]}".cdc_offsets WHERE destination = $1 FOR UPDATE',
            DESTINATION,
        )
        blocker_pid = await blocker.fetchval("SELECT pg_backend_pid()")

        async def writer_waits_on_the_offset_row() -> bool:
            # Asked on another connection: pg_stat_activity is read once per transaction.
            blocked = await pg_pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                blocker_pid,
            )
            return bool(blocked)

        task = asyncio.create_task(sink.write(second))
        await eventually(writer_waits_on_the_offset_row, within=30, what="the writer blocked")
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await sink.rows(QUALIFIED) == reference(first.events)
    record = await PostgresOffsetStore(pool=pg_pool, schema=names[1]).load(DESTINATION, PARTITION)
    assert record.position == first.checkpoint.position
    await sink.write(second)
    assert await sink.rows(QUALIFIED) == reference(events)
    await sink.aclose()


def services(command: str) -> None:
    subprocess.run(
        [sys.executable, str(SERVICES_SCRIPT), command, "postgres"],
        check=True,
        capture_output=True,
        timeout=180,
    )


@pytest.mark.timeout(600)  # stops and restarts PostgreSQL, 180 s allowed for each
async def test_an_outage_fails_writes_transiently_reports_down_and_recovers(
    postgres_database_dsn, names
):
    """Stops the project's PostgreSQL (``scripts/services down postgres``) mid-stream."""
    events = stream(120, 5)
    first, second, third, *rest = batches(events, 20)
    sink = PostgresSink(
        name=DESTINATION,
        dsn=postgres_database_dsn,
        schema=names[0],
        metadata_schema=names[1],
        retry=FAST_RETRY,
        health_timeout=2,
    )
    await sink.write(first)
    assert (await sink.health()).status is HealthStatus.UP
    await asyncio.to_thread(services, "down")
    try:
        with pytest.raises(TransientError):
            await sink.write(second)
        report = await sink.health()
        assert report.status is HealthStatus.DOWN
        assert report.message
    finally:
        await asyncio.to_thread(services, "up")
    for item in (second, third, *rest):
        await sink.write(item)
    assert (await sink.health()).status is HealthStatus.UP
    assert await sink.rows(QUALIFIED) == reference(events)
    record = await PostgresOffsetStore(dsn=postgres_database_dsn, schema=names[1]).load(
        DESTINATION, PARTITION
    )
    assert record.events_processed == len(events)
    await sink.aclose()
