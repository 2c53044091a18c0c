"""Failures classified: transient ones retried with backoff, a permanent one stops only
its destination (DOWN in /health, position kept) until its long retry or a restart."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from cdc_adapters.memory import MemorySink
from cdc_domain.errors import FailureClass, SinkError
from cdc_domain.ports import SinkBatch
from tests.factories import event
from tests.support.waiting import eventually
from tests.unit.app.test_app_endpoint import checks, served
from tests.unit.app.wiring import MemoryWiring, written


class RefusingSink(MemorySink):
    """A real in-memory sink whose database refuses every write, as one does when the
    agent's role lost its INSERT permission, until an operator grants it again."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.refusing = True
        self.attempts = 0

    async def write(self, batch: SinkBatch) -> None:
        self.attempts += 1
        if self.refusing:
            raise SinkError(f"{self.name}: permission denied for table customers")
        await super().write(batch)


def customers(count: int) -> list:
    return [event(table="customers", key=i, columns={"name": f"n{i}"}) for i in range(count)]


def retries(text: str) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["destination"], sample.labels["class"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "cdc_batch_retries_total"
    }


async def test_a_permanent_error_stops_only_its_destination_and_health_says_why():
    healthy, refusing = MemorySink("healthy"), RefusingSink("refusing")
    wiring = MemoryWiring(
        [healthy, refusing],
        pipeline={"max_batch_events": 10, "max_batch_delay_ms": 5, "permanent_retry_s": None},
    )
    wiring.source.append(*customers(25))

    async with served(wiring) as endpoint:
        progress = endpoint.components.progress
        await eventually(lambda: len(written(healthy)) == 25)
        await eventually(lambda: progress["refusing"].halted)
        status, body = await endpoint.get("/health")
        _, metrics = await endpoint.get("/metrics")
        attempts = refusing.attempts
        wiring.source.append(*customers(30)[25:])
        await eventually(lambda: len(written(healthy)) == 30)

    assert attempts == 1  # not retried: retrying soon would only repeat it
    assert refusing.attempts == 1  # nor while the others went on
    assert await wiring.offsets.load("refusing", "node1") is None  # its position is kept
    assert status == 200
    assert body["status"] == "degraded"
    replication = checks(body)["replication", "refusing"]
    assert replication["status"] == "down"
    assert replication["failure"] == FailureClass.PERMANENT.value
    assert "permission denied for table customers" in replication["message"]
    assert "restart" in replication["message"]
    assert checks(body)["replication", "healthy"]["status"] == "up"
    assert retries(metrics) == {("refusing", "permanent"): 1}


async def test_every_destination_stopped_is_a_pipeline_down():
    refusing = RefusingSink("refusing")
    wiring = MemoryWiring([refusing], pipeline={"max_batch_delay_ms": 5})
    wiring.source.append(*customers(1))

    async with served(wiring) as endpoint:
        await eventually(lambda: endpoint.components.progress["refusing"].halted)
        status, body = await endpoint.get("/health")
        ready, _ = await endpoint.get("/health/ready")

    assert (status, body["status"], ready) == (503, "down", 503)


async def test_a_stopped_destination_resumes_from_its_position_after_the_long_retry():
    refusing = RefusingSink("refusing")
    wiring = MemoryWiring([refusing], pipeline={"max_batch_delay_ms": 5, "permanent_retry_s": 1})
    wiring.source.append(*customers(5))

    async with served(wiring) as endpoint:
        progress = endpoint.components.progress["refusing"]
        await eventually(lambda: progress.halted)
        assert progress.retry_in_seconds == 1
        refusing.refusing = False  # the operator granted the permission again
        await eventually(lambda: len(written(refusing)) == 5)
        await eventually(lambda: not progress.halted)

    assert written(refusing) == list(range(5))
    assert progress.consecutive_failures == 0


async def test_transient_failures_are_retried_with_backoff_and_counted_by_class():
    flaky = MemorySink("flaky")
    flaky.fail_next = 3
    wiring = MemoryWiring(
        [flaky],
        pipeline={"max_batch_delay_ms": 5, "retry_initial_ms": 10, "retry_max_ms": 40},
    )
    wiring.source.append(*customers(4))

    async with served(wiring) as endpoint:
        await eventually(lambda: len(written(flaky)) == 4)
        _, metrics = await endpoint.get("/metrics")
        progress = endpoint.components.progress["flaky"]

    assert retries(metrics) == {("flaky", "transient"): 3}
    assert progress.failure is None
    assert not progress.halted
