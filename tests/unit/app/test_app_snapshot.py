"""Snapshots in the app: ``cdc-app snapshot`` run here or through a running pipeline,
``source.snapshot`` at start and while running, and what status and metrics show."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
from collections.abc import AsyncIterator

import aiohttp
import structlog
from prometheus_client.parser import text_string_to_metric_families

from cdc_adapters.memory import ManualClock, MemoryOffsetStore, MemorySink, MemorySnapshotSource
from cdc_app import cli, commands, snapshot_command
from cdc_app.container import running
from cdc_app.endpoint import health_app, serving
from cdc_app.settings import SnapshotMode
from cdc_app.snapshots import SnapshotRequest
from cdc_domain.errors import TransientError
from cdc_domain.events import SourcePosition
from cdc_domain.masking import REDACTED
from cdc_domain.snapshot_progress import SnapshotProgress
from cdc_domain.snapshot_rows import SnapshotCell, SnapshotRow
from cdc_domain.tokens import TokenRange
from tests.factories import event, table
from tests.support.waiting import eventually
from tests.unit.app.wiring import CUSTOMERS, MemoryWiring, free_port, memory_settings

LOG = structlog.get_logger("test")
READ_AT = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
FAST = {"max_batch_events": 10, "max_batch_delay_ms": 5, "retry_initial_ms": 10}


def customer(i: int, ts: int = 10) -> SnapshotRow:
    return SnapshotRow(
        partition_key={"id": i},
        clustering_key={},
        cells={"name": SnapshotCell(f"c{i}", ts), "email": SnapshotCell(f"c{i}@x.org", ts)},
        collections={},
        identity=str(i),
        read_at=READ_AT,
    )


def wiring_with_rows(rows: int = 30, **sections: object) -> MemoryWiring:
    """``sections`` of the settings, ``source`` included."""
    wiring = MemoryWiring([MemorySink("mirror")], settings=memory_settings(**sections))
    wiring.snapshot_source.put(CUSTOMERS.qualified_name, [customer(i) for i in range(rows)])
    return wiring


def customers(sink: MemorySink) -> dict:
    return sink.state.rows(CUSTOMERS.qualified_name)


async def test_a_snapshot_with_no_pipeline_running_is_run_here_and_recorded():
    wiring = wiring_with_rows()
    out, err = io.StringIO(), io.StringIO()
    code = await snapshot_command.snapshot(
        wiring.settings, wiring.container, out, err, SnapshotRequest(), dry_run=False
    )
    assert code == 0, err.getvalue()
    (sink,) = wiring.sinks
    assert customers(sink)[((4,), ())] == {"name": "c4", "email": REDACTED}
    assert len(customers(sink)) == 30
    printed = out.getvalue()
    assert "shop.customers" in printed
    assert "EST. ROWS" in printed
    assert "finished" in printed
    (progress,) = (await SnapshotProgress("node1").load(wiring.offsets, "mirror")).values()
    assert progress.finished
    assert progress.rows == 30


async def test_a_dry_run_prints_the_plan_and_writes_nothing():
    wiring = wiring_with_rows()
    wiring.snapshot_source.estimates[CUSTOMERS.qualified_name] = 12_345
    out, err = io.StringIO(), io.StringIO()
    code = await snapshot_command.snapshot(
        wiring.settings, wiring.container, out, err, SnapshotRequest(), dry_run=True
    )
    assert code == 0
    assert "12,345" in out.getvalue()
    assert "mirror (new, 16 to read)" in out.getvalue()
    assert wiring.sinks[0].batches == []
    assert await wiring.offsets.list() == []


async def test_tables_destinations_and_token_ranges_asked_for_must_exist():
    wiring = wiring_with_rows()
    for request, problem in (
        (SnapshotRequest(tables=("shop.nope",)), "no captured table matches shop.nope"),
        (SnapshotRequest(destinations=("nope",)), "no destination named 'nope'"),
    ):
        err = io.StringIO()
        code = await snapshot_command.snapshot(
            wiring.settings, wiring.container, io.StringIO(), err, request, dry_run=False
        )
        assert code == 2
        assert problem in err.getvalue()


async def test_a_resync_of_a_token_range_reads_only_that_range():
    wiring = wiring_with_rows(rows=40)
    within = TokenRange(0, 2**62)
    code = await snapshot_command.snapshot(
        wiring.settings,
        wiring.container,
        io.StringIO(),
        io.StringIO(),
        SnapshotRequest(tables=("shop.*",), token_range=within),
        dry_run=False,
    )
    assert code == 0
    expected = sum(0 < MemorySnapshotSource.token(customer(i)) <= 2**62 for i in range(40))
    assert len(customers(wiring.sinks[0])) == expected
    assert await wiring.offsets.list() == []


@contextlib.asynccontextmanager
async def pipeline(wiring: MemoryWiring) -> AsyncIterator[tuple[object, asyncio.Event]]:
    """A pipeline streaming, with its endpoint on ``health.port`` and the automatic
    snapshots ``source.snapshot`` asks for."""
    stop = asyncio.Event()
    async with running(wiring.container) as components:
        assert wiring.settings.health.port is not None
        port = wiring.settings.health.port
        async with (
            serving(health_app(components, stop), "127.0.0.1", port),
            cli._automatic_snapshots(components.snapshots, wiring.settings, stop, LOG) as holds,
        ):
            task = asyncio.create_task(wiring.runner(components, holds).run(stop))
            try:
                yield components, stop
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)


async def test_the_command_asks_a_running_pipeline_to_snapshot_and_follows_it():
    wiring = wiring_with_rows(health={"port": free_port()}, pipeline=FAST)
    async with pipeline(wiring):
        out, err = io.StringIO(), io.StringIO()
        code = await snapshot_command.snapshot(
            wiring.settings, wiring.container, out, err, SnapshotRequest(), dry_run=False
        )
        assert code == 0, err.getvalue()
        assert "running in the pipeline" in out.getvalue()
        assert len(customers(wiring.sinks[0])) == 30
        status = io.StringIO()
        await commands.status(wiring.settings, wiring.container, status)
        assert "snapshots, as recorded" in status.getvalue()
        assert "shop.customers  mirror       finished" in status.getvalue()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{wiring.settings.health.port}/metrics") as response,
        ):
            metrics = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    assert samples[("cdc_snapshot_rows_read_total", (("table", "shop.customers"),))] == 30
    written = (
        "cdc_snapshot_events_written_total",
        (("destination", "mirror"), ("table", "shop.customers")),
    )
    assert samples[written] == 30
    assert samples[("cdc_snapshot_running", ())] == 0


async def test_a_second_snapshot_is_refused_while_one_runs():
    gate = asyncio.Event()

    class Slow(MemorySnapshotSource):
        async def read(self, schema, token_range):
            await gate.wait()
            async for page in super().read(schema, token_range):
                yield page

    wiring = wiring_with_rows(health={"port": free_port()}, pipeline=FAST)
    slow = Slow()
    slow.put(CUSTOMERS.qualified_name, [customer(i) for i in range(5)])
    wiring.container.snapshot_source.override(slow)
    async with pipeline(wiring):
        url = f"http://127.0.0.1:{wiring.settings.health.port}/snapshot"
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json={"request": {}}) as first:
                assert (first.status, (await first.json())["started"]) == (200, True)
            async with session.post(url, json={"request": {}}) as second:
                assert second.status == 409
            async with session.post(url, json={"request": {"token_range": "9:1"}}) as bad:
                assert bad.status == 400
            gate.set()

            async def finished() -> bool:
                async with session.get(url) as response:
                    return (await response.json())["snapshot"]["state"] == "finished"

            await eventually(finished)


async def test_initial_snapshots_a_new_destination_beside_the_stream_once():
    wiring = wiring_with_rows(
        source={"type": "memory", "partition_id": "node1", "snapshot": "initial"},
        health={"port": free_port()},
        pipeline=FAST,
    )
    assert wiring.settings.source.snapshot is SnapshotMode.INITIAL
    streamed = event(key=100, table="customers", ts=50, columns={"name": "streamed"})
    wiring.source.append(streamed)
    async with pipeline(wiring) as (components, _):
        await eventually(lambda: len(customers(wiring.sinks[0])) == 31)
        await eventually(lambda: components.snapshots.status()["state"] == "finished")
    assert customers(wiring.sinks[0])[((100,), ())] == {"name": "streamed"}
    snapshot_events = [e for b in wiring.sinks[0].batches for e in b.events if e.is_snapshot]
    assert len(snapshot_events) == 30
    async with pipeline(wiring) as (components, _):
        await eventually(lambda: bool(wiring.sinks[0].batches))
        assert components.snapshots.status() is None  # finished before: nothing to do


async def test_initial_leaves_a_destination_that_already_streams_alone():
    from cdc_domain.offsets import Checkpoint

    wiring = wiring_with_rows(
        source={"type": "memory", "partition_id": "node1", "snapshot": "initial"},
        health={"port": free_port()},
        pipeline=FAST,
    )
    await wiring.offsets.commit("mirror", Checkpoint("node1", SourcePosition(1, 1), 1))
    async with pipeline(wiring) as (components, _):
        await asyncio.sleep(0.2)
        assert components.snapshots.status() is None
    assert customers(wiring.sinks[0]) == {}


async def test_when_needed_snapshots_a_table_that_becomes_captured_while_running():
    wiring = wiring_with_rows(
        source={"type": "memory", "partition_id": "node1", "snapshot": "when_needed"},
        snapshot={"check_interval_s": 1},
        health={"port": free_port()},
        pipeline=FAST,
    )
    late = table("late", regular={"v": "int"})
    wiring.snapshot_source.put(
        late.qualified_name,
        [
            SnapshotRow({"id": 1}, {}, {"v": SnapshotCell(7, 5)}, {}, "1", READ_AT),
        ],
    )
    async with pipeline(wiring):
        await eventually(lambda: len(customers(wiring.sinks[0])) == 30)
        wiring.schemas.put(late)
        await eventually(
            lambda: wiring.sinks[0].state.rows(late.qualified_name) == {((1,), ()): {"v": 7}},
            within=10,
        )


class FlakyStore(MemoryOffsetStore):
    """A destination's own offset store whose database does not answer at first."""

    def __init__(self, clock: object, failures: int) -> None:
        super().__init__(clock)
        self.failures = failures

    async def list(self) -> list:
        if self.failures:
            self.failures -= 1
            raise TransientError("the database does not answer yet")
        return await super().list()


class OwnOffsets(MemorySink):
    """A sink keeping its offsets in its own (flaky) database."""

    def __init__(self, name: str, store: MemoryOffsetStore) -> None:
        super().__init__(name)
        self.store = store

    @property
    def commits_offsets(self) -> bool:
        return True

    def offset_store(self, clock: object) -> MemoryOffsetStore:
        return self.store


async def test_a_destination_whose_progress_cannot_be_read_is_held_alone():
    slow = OwnOffsets("slow", FlakyStore(ManualClock(), failures=4))
    fast = MemorySink("fast")
    names = [{"name": "fast", "type": "memory"}, {"name": "slow", "type": "memory"}]
    settings = memory_settings(
        source={"type": "memory", "partition_id": "node1", "snapshot": "initial"},
        destinations=names,
        health={"port": free_port()},
        pipeline={**FAST, "retry_max_ms": 200},
    )
    wiring = MemoryWiring([fast, slow], settings=settings)
    wiring.snapshot_source.put(CUSTOMERS.qualified_name, [customer(i) for i in range(10)])
    wiring.source.append(event(key=100, table="customers", ts=50, columns={"name": "streamed"}))
    async with pipeline(wiring):
        await eventually(lambda: len(customers(fast)) == 11)
        assert slow.batches == []  # held: its snapshot could not be planned yet
        await eventually(lambda: len(customers(slow)) == 11, within=10)
