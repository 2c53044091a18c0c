from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest
import structlog

from cdc_app.runner import replicate_until_stopped
from cdc_app.settings import PipelineSettings
from cdc_domain.replication import DeliveryOutcome

LOG = structlog.get_logger("test")
FAST = PipelineSettings(max_batch_events=5, max_batch_delay_ms=1)


class Batches:
    """Returns the given outcomes batch by batch, then sets ``stop``."""

    def __init__(self, stop: asyncio.Event, *batches: list[DeliveryOutcome] | Exception):
        self.stop = stop
        self.batches = list(batches)
        self.sizes: list[int] = []

    async def __call__(self, max_events: int) -> list[DeliveryOutcome]:
        self.sizes.append(max_events)
        batch = self.batches.pop(0)
        if not self.batches:
            self.stop.set()
        if isinstance(batch, Exception):
            raise batch
        return batch


async def test_once_runs_a_single_batch_and_reports_failure():
    stop = asyncio.Event()
    failed = Batches(stop, [DeliveryOutcome("a", error=RuntimeError("down"))], [])

    assert await replicate_until_stopped(failed, FAST, stop, LOG, once=True) is False
    assert failed.sizes == [5]


async def test_batches_continue_until_stopped_and_survive_errors():
    stop = asyncio.Event()
    batches = Batches(
        stop,
        [DeliveryOutcome("a", delivered=5)],
        ConnectionError("offsets unavailable"),
        [],
        [DeliveryOutcome("a", delivered=1)],
    )

    assert await replicate_until_stopped(batches, FAST, stop, LOG) is True
    assert batches.sizes == [5, 5, 5, 5]


async def test_a_stop_ends_the_idle_wait_at_once():
    stop = asyncio.Event()
    idle = PipelineSettings(max_batch_delay_ms=60_000)

    async def nothing(max_events: int) -> list[DeliveryOutcome]:
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return []

    await asyncio.wait_for(replicate_until_stopped(nothing, idle, stop, LOG), timeout=5)


HANGING_BATCH = """
import asyncio, structlog
from cdc_app.runner import install_stop_signals, replicate_until_stopped
from cdc_app.settings import PipelineSettings

async def main():
    stop = asyncio.Event()
    install_stop_signals(stop, structlog.get_logger())

    async def hang(max_events):
        print("batch started", flush=True)
        await asyncio.sleep(3600)

    await replicate_until_stopped(hang, PipelineSettings(), stop, structlog.get_logger())

asyncio.run(main())
"""


def test_a_second_signal_exits_at_once_when_a_batch_hangs():
    process = subprocess.Popen(
        [sys.executable, "-c", HANGING_BATCH],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "batch started\n"
        process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        process.kill()
        process.communicate()
