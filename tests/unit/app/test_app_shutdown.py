"""Stopping on a signal, in a real process: in-flight batches finish, offsets are
committed, and the stop is bounded however a batch behaves."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# A pipeline whose sink announces each write and takes WRITE_SECONDS over it; on exit
# it prints what the mirror holds and the committed position.
PIPELINE = """
import asyncio, sys
from cdc_adapters.memory import MemorySink
from cdc_app.container import running
from cdc_app.logs import configure_logging
from cdc_app.shutdown import install_stop_signals
from tests.factories import event
from tests.unit.app.wiring import LOG, MemoryWiring

WRITE_SECONDS = float(sys.argv[1])

class SlowSink(MemorySink):
    async def write(self, batch):
        print("writing", len(batch.events), flush=True)
        await asyncio.sleep(WRITE_SECONDS)
        await super().write(batch)

async def main():
    sink = SlowSink("mirror")
    wiring = MemoryWiring([sink], pipeline={"max_batch_events": 100, "shutdown_timeout_s": 1})
    wiring.source.append(*(event(table="customers", key=i) for i in range(250)))
    configure_logging(wiring.settings.logging)
    stop = asyncio.Event()
    install_stop_signals(stop, wiring.settings.pipeline.shutdown_timeout_s, LOG)
    async with running(wiring.container) as components:
        clean = await wiring.runner(components).run(stop)
    record = await wiring.offsets.load("mirror", "node1")
    held = sum(len(b.events) for b in sink.batches)
    print("held", held, "committed", record.events_processed if record else 0, flush=True)
    sys.exit(0 if clean else 1)

asyncio.run(main())
"""


def start(write_seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PIPELINE, str(write_seconds)],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'src'}", "PATH": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_sigterm_finishes_the_batch_in_flight_commits_it_and_exits_0():
    process = start(0.3)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "writing 100\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == "held 100 committed 100\n"
    finally:
        process.kill()
        process.communicate()


def test_a_batch_that_overruns_the_timeout_is_abandoned_uncommitted_within_the_bound():
    process = start(3600)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "writing 100\n"
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 1
        assert time.monotonic() - signalled < 3  # shutdown_timeout_s is 1
        assert process.stdout.read() == "held 0 committed 0\n"
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_exits_at_once(signum):
    process = start(3600)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "writing 100\n"
        process.send_signal(signum)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.3)
        process.send_signal(signum)
        assert process.wait(timeout=0.5) == 128 + signum
    finally:
        process.kill()
        process.communicate()
