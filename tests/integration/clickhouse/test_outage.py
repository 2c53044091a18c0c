"""The ClickHouse server stops mid-stream and comes back (the Debian server only: it is
the one a test can stop; chdb runs inside this process)."""

from __future__ import annotations

import asyncio
import time

import pytest

from cdc_adapters.clickhouse import RetryPolicy
from cdc_domain.errors import TransientError
from cdc_domain.health import HealthStatus
from tests.contract.sink_contract import HISTORY, batch, expected_rows
from tests.integration.services import SERVICES_SCRIPT


@pytest.fixture(scope="module")
def server_url(clickhouse_url: str) -> str:
    return clickhouse_url


async def _services(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        str(SERVICES_SCRIPT),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


@pytest.mark.timeout(600)  # stops and restarts the ClickHouse server
async def test_writes_fail_fast_while_down_and_succeed_after(make_sink):
    retry = RetryPolicy(attempts=3, max_seconds=3.0, initial_wait=0.1, max_wait=1.0)
    sink, read_back = await make_sink(retry=retry)
    await sink.write(batch(HISTORY[:4]))
    await _services("down", "clickhouse")
    try:
        assert (await sink.health()).status is HealthStatus.DOWN
        started = time.monotonic()
        with pytest.raises(TransientError):
            await sink.write(batch(HISTORY[4:]))
        assert time.monotonic() - started < 10  # bounded retries, not a hang
    finally:
        await _services("up", "clickhouse")
    assert (await sink.health()).status is HealthStatus.UP
    await sink.write(batch(HISTORY[4:]))
    assert await read_back() == expected_rows(HISTORY)
