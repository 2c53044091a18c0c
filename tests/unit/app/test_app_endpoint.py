"""The HTTP endpoint: liveness, readiness, per-dependency health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from cdc_adapters.cassandra.cdc_raw_space import measure_cdc_raw
from cdc_adapters.memory import MemoryChangeSource, MemorySink
from cdc_app.container import running
from cdc_app.endpoint import health_app, serving
from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.events import SourcePosition
from cdc_domain.ports import SinkBatch, SourceStorage
from cdc_domain.schema_evolution import BlockedTable
from tests.factories import event, replica_copy
from tests.support.waiting import eventually
from tests.unit.app.wiring import CUSTOMERS, MemoryWiring, written

FAST = {"max_batch_events": 10, "max_batch_delay_ms": 5, "retry_initial_ms": 10}


class Endpoint:
    def __init__(self, url: str, session: aiohttp.ClientSession, components: Any) -> None:
        self.url = url
        self.session = session
        self.components = components

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.url + path) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


@contextlib.asynccontextmanager
async def served(wiring: MemoryWiring, *, run: bool = True) -> AsyncIterator[Endpoint]:
    stop = asyncio.Event()
    async with running(wiring.container) as components:
        task = asyncio.create_task(wiring.runner(components).run(stop)) if run else None
        try:
            async with (
                serving(health_app(components, stop), "127.0.0.1", 0) as url,
                aiohttp.ClientSession() as session,
            ):
                yield Endpoint(url, session, components)
        finally:
            stop.set()
            if task is not None:
                await asyncio.wait_for(task, 10)


class CdcRawSource(MemoryChangeSource):
    """The in-memory source, reporting a ``cdc_raw`` directory's space as the Cassandra
    source does (1 MiB of ``cdc_total_space``)."""

    def __init__(self, directory: Path) -> None:
        super().__init__("node1")
        self.directory = directory

    async def storage(self) -> SourceStorage:
        return await asyncio.to_thread(measure_cdc_raw, self.directory, 1)


def checks(body: dict) -> dict[tuple[str, str], dict]:
    return {(check["kind"], check["name"]): check for check in body["checks"]}


async def test_one_configured_database_is_checked_and_nothing_else():
    wiring = MemoryWiring([MemorySink("mirror")], pipeline=FAST)

    async with served(wiring) as endpoint:
        live = await endpoint.get("/health/live")
        ready = await endpoint.get("/health/ready")
        status, body = await endpoint.get("/health")

    assert live == (200, {"status": "up"})
    assert ready == (200, {"ready": True, "status": "up"})
    assert status == 200
    assert body["status"] == "up"
    found = checks(body)
    # The memory source and schema source have no health(): they are not checked.
    assert set(found) == {("destination", "mirror"), ("replication", "mirror")}
    assert found["destination", "mirror"]["latency_ms"] is not None
    assert found["replication", "mirror"]["lag_seconds"] == 0.0


async def test_a_database_down_degrades_the_pipeline_and_says_why():
    up, down = MemorySink("up"), MemorySink("down")
    down.fail_next = 1_000_000
    wiring = MemoryWiring([up, down], pipeline=FAST)
    wiring.source.append(event(table="customers", key=1))

    async with served(wiring) as endpoint:
        await eventually(lambda: endpoint.components.progress["down"].consecutive_failures >= 2)
        status, body = await endpoint.get("/health")
        ready = await endpoint.get("/health/ready")
        down.fail_next = 0
        await eventually(lambda: written(down) == [1])
        _, recovered = await endpoint.get("/health")

    assert (status, body["status"]) == (200, "degraded")
    assert ready == (200, {"ready": True, "status": "degraded"})
    found = checks(body)
    assert found["destination", "up"]["status"] == "up"
    assert found["destination", "down"]["status"] == "down"
    replication = found["replication", "down"]
    assert replication["status"] == "degraded"
    assert "TransientError: down is unavailable" in replication["message"]
    assert "retries from its committed offset" in replication["message"]
    assert replication["position"] is None
    assert recovered["status"] == "up"


async def test_every_database_down_is_down_and_not_ready():
    sink = MemorySink("mirror")
    sink.fail_next = 1_000_000
    wiring = MemoryWiring([sink], pipeline=FAST)

    async with served(wiring, run=False) as endpoint:
        health = await endpoint.get("/health")
        ready = await endpoint.get("/health/ready")
        live = await endpoint.get("/health/live")

    assert (health[0], health[1]["status"]) == (503, "down")
    assert ready == (503, {"ready": False, "status": "down"})
    assert live[0] == 200


async def test_a_paused_table_and_its_dead_letters_degrade_with_what_to_do():
    wiring = MemoryWiring([MemorySink("mirror")], pipeline=FAST)
    stuck = event(table="customers", key=9)
    await wiring.dead_letters.write(
        [
            DeadLetterEvent.for_event(
                stuck,
                reason=FailureReason.SCHEMA_INCOMPATIBLE,
                error="email: text to int",
                failed_at=wiring.clock.now(),
                destination="mirror",
            )
        ]
    )

    async with served(wiring, run=False) as endpoint:
        endpoint.components.progress["mirror"].blocked = (
            BlockedTable("mirror", "shop.customers", "ALTER_TYPE email", "no cast", {}),
        )
        _, body = await endpoint.get("/health")

    replication = checks(body)["replication", "mirror"]
    assert body["status"] == "degraded"
    assert replication["schema_incompatible_pending"] == 1
    assert (
        "cdc-app schema accept --destination mirror --table shop.customers"
        in (replication["message"])
    )
    assert (
        "cdc-app dlq replay --destination mirror --reason SCHEMA_INCOMPATIBLE"
        in (replication["message"])
    )


async def test_cdc_raw_above_the_threshold_degrades(tmp_path: Path):
    cdc_raw = tmp_path / "cdc_raw"
    cdc_raw.mkdir()
    for name in ("CommitLog-7-1.log", "CommitLog-7-2.log"):
        (cdc_raw / name).write_bytes(b"x" * 450_000)
    (cdc_raw / "CommitLog-7-1_cdc.idx").write_text("450000\nCOMPLETED\n")
    wiring = MemoryWiring([MemorySink("mirror")], source=CdcRawSource(cdc_raw), pipeline=FAST)

    async with served(wiring, run=False) as endpoint:
        _, body = await endpoint.get("/health")
        (cdc_raw / "CommitLog-7-1.log").unlink()
        _, after = await endpoint.get("/health")

    usage = checks(body)["cdc_raw", "cdc_raw"]
    assert body["status"] == "degraded"
    assert usage["segments"] == 2
    assert usage["total_bytes"] == 1024 * 1024
    assert "rejects writes to CDC tables" in usage["message"]
    assert checks(after)["cdc_raw", "cdc_raw"]["status"] == "up"


async def test_cdc_raw_that_cannot_be_measured_degrades_and_says_where(tmp_path: Path):
    missing = tmp_path / "cdc_raw"
    wiring = MemoryWiring([MemorySink("mirror")], source=CdcRawSource(missing), pipeline=FAST)

    async with served(wiring, run=False) as endpoint:
        _, body = await endpoint.get("/health")
        status, _ = await endpoint.get("/metrics")

    usage = checks(body)["cdc_raw", "cdc_raw"]
    assert usage["status"] == "degraded"
    assert usage["message"].startswith(f"cannot measure {missing}: ")
    assert status == 200


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_by_table_destination_and_reason(tmp_path: Path):
    cdc_raw = tmp_path / "cdc_raw"
    cdc_raw.mkdir()
    (cdc_raw / "CommitLog-7-1.log").write_bytes(b"x" * 100)
    mirror, flaky = MemorySink("mirror"), MemorySink("flaky")
    flaky.fail_next = 2
    wiring = MemoryWiring([mirror, flaky], source=CdcRawSource(cdc_raw), pipeline=FAST)
    wiring.source.append(
        event(table="customers", key=1, columns={"name": "a"}),
        event(table="customers", key=2, columns={"name": "b"}),
        event(table="unknown", key=3),
    )

    async with served(wiring) as endpoint:
        await eventually(lambda: len(written(mirror)) == len(written(flaky)) == 2)
        status, text = await endpoint.get("/metrics")

    assert status == 200
    found = samples(text)

    def value(name: str, **labels: str) -> float:
        return found[name, frozenset(labels.items())]

    assert value("cdc_events_read_total", table="shop.customers") == 2
    assert value("cdc_events_read_total", table="shop.unknown") == 1
    for destination in ("mirror", "flaky"):
        assert value("cdc_events_written_total", table="shop.customers", destination=destination)
        assert value(
            "cdc_events_dead_lettered_total",
            table="shop.unknown",
            destination=destination,
            reason="UNKNOWN_TABLE",
        )
        assert value(
            "cdc_schema_changes_applied_total",
            destination=destination,
            table=CUSTOMERS.qualified_name,
            kind="CREATE_TABLE",
        )
        assert value("cdc_lag_seconds", destination=destination) == 0
        assert value("cdc_batch_duration_seconds_count", destination=destination) >= 1
    assert value("cdc_batch_retries_total", destination="flaky", **{"class": "transient"}) == 2
    assert value("cdc_destination_failing_batches", destination="flaky") == 0
    assert value("cdc_raw_segments_pending") == 1
    assert value("cdc_raw_bytes") == 100
    assert value("cdc_raw_capacity_bytes") == 1024 * 1024


async def test_metrics_count_the_copies_of_writes_a_destination_already_held():
    """Another node's agent wrote two of these writes first (the same writes, read from
    its own commit log); this agent's copies of them are absorbed and counted, by the
    sink that keeps one record per write, and only there."""
    history = MemorySink("history", absorb_copies=True)
    mirror = MemorySink("mirror")
    wiring = MemoryWiring([history, mirror], pipeline=FAST)
    writes = [event(table="customers", key=k, ts=k, columns={"name": f"n{k}"}) for k in (1, 2, 3)]
    elsewhere = [replica_copy(w, "node2", SourcePosition(50, i)) for i, w in enumerate(writes[:2])]
    await history.write(SinkBatch(tuple(elsewhere), {CUSTOMERS.qualified_name: CUSTOMERS}, None))
    wiring.source.append(*writes)

    async with served(wiring) as endpoint:
        await eventually(lambda: len(written(history)) == 5 and len(written(mirror)) == 3)
        _, text = await endpoint.get("/metrics")

    found = samples(text)
    absorbed = {
        dict(labels)["destination"]: value
        for (name, labels), value in found.items()
        if name == "cdc_replica_copies_absorbed_total"
    }
    assert absorbed == {"history": 2}
    assert (
        found[
            "cdc_replica_copies_absorbed_total",
            frozenset({"destination": "history", "table": "shop.customers"}.items()),
        ]
        == 2
    )
    assert len(history.state.rows("shop.customers")) == 3
