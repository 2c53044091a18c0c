"""The replication loop and its signals.

A stop request never interrupts a batch: the batch in flight finishes and commits its
offsets, so a stop leaves nothing to replay but what was never read. A second signal
is the way out when that batch hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Sequence

import structlog

from cdc_app.settings import PipelineSettings
from cdc_domain.replication import DeliveryOutcome

__all__ = ["install_stop_signals", "replicate_until_stopped"]

Replicate = Callable[[int], Awaitable[Sequence[DeliveryOutcome]]]

_FIRST_RETRY_SECONDS = 0.5
_LONGEST_RETRY_SECONDS = 30.0


def install_stop_signals(stop: asyncio.Event, log: structlog.typing.FilteringBoundLogger) -> None:
    """SIGINT or SIGTERM sets ``stop``; a second one ends the process at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second signal, exiting now", signal=signum.name)
            os._exit(128 + signum)
        log.info("stopping after the current batch", signal=signum.name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)


async def replicate_until_stopped(
    replicate: Replicate,
    pipeline: PipelineSettings,
    stop: asyncio.Event,
    log: structlog.typing.FilteringBoundLogger,
    *,
    once: bool = False,
) -> bool:
    """Run batches until ``stop`` is set (or one batch, with ``once``), waiting
    ``max_batch_delay_ms`` after a batch that delivered nothing and backing off while
    batches fail. Returns whether the last batch succeeded everywhere."""
    idle = pipeline.max_batch_delay_ms / 1000
    failures = 0
    ok = True
    while not stop.is_set():
        ok, delivered = await _batch(replicate, pipeline.max_batch_events, log)
        if once:
            break
        failures = 0 if ok else failures + 1
        if failures:
            retry = _FIRST_RETRY_SECONDS * 2 ** (failures - 1)
            await _wait(stop, min(max(idle, retry), _LONGEST_RETRY_SECONDS))
        elif not delivered:
            await _wait(stop, idle)
    return ok


async def _batch(
    replicate: Replicate, max_events: int, log: structlog.typing.FilteringBoundLogger
) -> tuple[bool, int]:
    try:
        outcomes = await replicate(max_events)
    except Exception as exc:
        log.error("batch failed", error=_describe(exc))
        return False, 0
    for outcome in outcomes:
        if outcome.error is not None:
            log.warning(
                "destination failed",
                destination=outcome.destination,
                error=_describe(outcome.error),
            )
        elif outcome.delivered or outcome.dead_lettered:
            log.info(
                "batch delivered",
                destination=outcome.destination,
                delivered=outcome.delivered,
                dead_lettered=outcome.dead_lettered,
                position=str(outcome.position),
            )
    ok = all(outcome.ok for outcome in outcomes)
    return ok, sum(outcome.delivered + outcome.dead_lettered for outcome in outcomes)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
