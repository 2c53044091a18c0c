"""ClickHouse stopped for 30 s while the workload runs: PostgreSQL and TimescaleDB keep
up meanwhile, health turns degraded (ClickHouse down) and back to up, and ClickHouse
catches up afterwards with nothing lost.

ClickHouse is the service stopped because it is the one least shared with other suites
on the machine; the outage is kept to the 30 s the scenario needs.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import REPO_ROOT, durable_end
from tests.integration.e2e.workload import Workload, Writer, create_tables

OUTAGE_SECONDS = 30


def _services(action: str) -> None:
    subprocess.run(
        [str(REPO_ROOT / "scripts" / "services"), action, "clickhouse"],
        check=True,
        capture_output=True,
        timeout=180,
    )


@pytest.mark.timeout(600)  # a 30 s outage, and ClickHouse restarts (180 s allowed)
async def test_a_destination_down_for_30_s_catches_up_and_the_others_keep_up(
    stack: Stack,
) -> None:
    create_tables(stack.session, stack.keyspace)
    writer = Writer(stack.session)
    workload = Workload(stack.keyspace, seed=17)
    with stack.links():
        pipeline = stack.pipeline()
        pipeline.start()
        writer.until(workload, 3000)
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert pipeline.get("/health")["status"] == "up"
        _services("down")
        try:
            stopped = time.monotonic()
            paced = threading.Thread(
                target=writer.until,
                args=(workload, 8000),
                kwargs={"between": lambda _: time.sleep(0.2)},
            )
            paced.start()
            paced.join()
            target = durable_end(stack.reference_cdc_raw)

            def others_caught_up() -> bool:
                positions = pipeline.positions()
                return all(positions[name] and positions[name] >= target for name in ("pg", "ts"))

            pipeline.wait_until(others_caught_up, OUTAGE_SECONDS, "pg and ts caught up")
            report = pipeline.get("/health")
            assert report["status"] == "degraded", report
            assert any(
                c["name"] == "ch" and c["kind"] == "destination" and c["status"] == "down"
                for c in report["checks"]
            )
            ch = pipeline.positions()["ch"]
            assert ch is None or ch < target
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        finally:
            _services("up")
        pipeline.wait_caught_up(target)
        pipeline.wait_until(lambda: pipeline.get("/health")["status"] == "up", 60, "health up")
        assert pipeline.stop() == 0, pipeline.tail()
    assert await stack.history_problems() == {}
    await stack.assert_mirrors_equal()
    assert stack.dead_letters() == []
