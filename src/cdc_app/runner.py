"""The long-running pipeline: one loop per destination, and one that frees the source.

Each destination reads its own next batch from its own committed offset (ADR 0002), so
a slow or failing destination holds back nobody and keeps its place: it retries from
that offset with a growing pause, reported through its progress, and catches up once
it answers again. A loop holds one batch at a time, so memory is bounded by
``max_batch_events`` per destination however far one lags.

Batching by size and time: a loop whose batch came back full reads again at once (a
flood goes through in full batches); one that found less waits ``max_batch_delay_ms``
first, so what arrives meanwhile makes the next batch and a trickle is delivered
within that delay.

A stop never interrupts a batch: each loop finishes the one in flight, commits, and
ends; the source is acknowledged a last time. Batches still running after
``shutdown_timeout_s`` are abandoned; their offsets did not move, so they are read
again at the next start and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence

import structlog

from cdc_app.metrics import Metrics
from cdc_app.progress import DestinationProgress
from cdc_app.settings import PipelineSettings
from cdc_domain.replication import DeliveryOutcome, Destination, ReplicateBatch

__all__ = ["Runner", "describe_error"]

Logger = structlog.typing.FilteringBoundLogger


class Runner:
    def __init__(
        self,
        *,
        replicate: ReplicateBatch,
        destinations: Sequence[Destination],
        progress: Mapping[str, DestinationProgress],
        metrics: Metrics,
        pipeline: PipelineSettings,
        log: Logger,
    ) -> None:
        self._replicate = replicate
        self._destinations = tuple(destinations)
        self._progress = progress
        self._metrics = metrics
        self._pipeline = pipeline
        self._log = log

    async def run(self, stop: asyncio.Event) -> bool:
        """Deliver until ``stop`` is set, then drain. Returns whether every loop ended
        by itself within ``shutdown_timeout_s`` (False also when a loop crashed)."""
        loops = [
            asyncio.create_task(self._deliver_until(stop, d), name=f"deliver {d.name}")
            for d in self._destinations
        ]
        loops.append(asyncio.create_task(self._acknowledge_until(stop), name="acknowledge"))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *loops], return_when=asyncio.FIRST_COMPLETED)
        # A loop returns only once ``stop`` is set; one that raised is a bug, and stops all.
        crashed = {
            task.get_name(): error
            for task in done
            if task is not stopped and (error := task.exception()) is not None
        }
        for loop, error in crashed.items():
            self._log.error("a loop crashed, stopping", loop=loop, error=describe_error(error))
        stop.set()
        await stopped
        timeout = self._pipeline.shutdown_timeout_s
        _, abandoned = await asyncio.wait(loops, timeout=timeout)
        for task in abandoned:
            task.cancel()
        await asyncio.gather(*abandoned, return_exceptions=True)
        if abandoned:
            self._log.warning(
                "stop timed out; batches in flight were abandoned and will be read again",
                timeout_s=timeout,
                loops=sorted(task.get_name() for task in abandoned),
            )
        await self._acknowledge()
        return not abandoned and not crashed

    async def _deliver_until(self, stop: asyncio.Event, destination: Destination) -> None:
        name = destination.name
        progress = self._progress[name]
        log = self._log.bind(destination=name)
        max_events = self._pipeline.max_batch_events
        while not stop.is_set():
            started = time.perf_counter()
            outcome = await self._replicate.deliver(destination, max_events)
            self._metrics.batch_seconds.labels(name).observe(time.perf_counter() - started)
            if outcome.error is None:
                pause = self._succeeded(outcome, progress, log)
            else:
                pause = self._failed(outcome.error, progress, log)
            if pause:
                await _pause(stop, pause)

    def _succeeded(
        self, outcome: DeliveryOutcome, progress: DestinationProgress, log: Logger
    ) -> float:
        """Record a successful batch; the pause before the next one."""
        if progress.consecutive_failures:
            log.info("destination recovered", failed_batches=progress.consecutive_failures)
        # Every event read was either written or dead-lettered, so this many events
        # means the batch was full (entries that could not be decoded only add to it).
        full = outcome.delivered + outcome.dead_lettered >= self._pipeline.max_batch_events
        progress.succeeded(outcome, full=full)
        self._metrics.destination_failing.labels(progress.name).set(0)
        if outcome.delivered or outcome.dead_lettered:
            log.debug(
                "batch delivered",
                delivered=outcome.delivered,
                dead_lettered=outcome.dead_lettered,
                position=str(outcome.position),
            )
        return 0.0 if full else self._pipeline.max_batch_delay_ms / 1000

    def _failed(self, error: BaseException, progress: DestinationProgress, log: Logger) -> float:
        """Record a failed batch; the pause before retrying it from the same offset."""
        pipeline = self._pipeline
        retry_ms = pipeline.retry_initial_ms << min(progress.consecutive_failures, 30)
        pause = min(retry_ms, pipeline.retry_max_ms) / 1000
        progress.failed(describe_error(error), pause)
        self._metrics.retries.labels(progress.name).inc()
        self._metrics.destination_failing.labels(progress.name).set(progress.consecutive_failures)
        log.warning(
            "batch failed, retrying from the committed offset",
            error=describe_error(error),
            failed_batches=progress.consecutive_failures,
            retry_in_s=pause,
            position=str(progress.position) if progress.position else None,
        )
        return pause

    async def _acknowledge_until(self, stop: asyncio.Event) -> None:
        interval = self._pipeline.acknowledge_interval_ms / 1000
        while not stop.is_set():
            await _pause(stop, interval)
            await self._acknowledge()

    async def _acknowledge(self) -> None:
        """Let the source free what every destination has committed (Cassandra: delete
        segments from ``cdc_raw``); a failure only delays that to the next round."""
        try:
            await self._replicate.acknowledge()
        except Exception as exc:
            self._log.warning("acknowledging the source failed", error=describe_error(exc))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when a stop is requested meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def describe_error(exc: BaseException) -> str:
    """An error as its type and message: adapters keep values out of their messages,
    and a traceback's renderer could show local variables, which may hold them."""
    return f"{type(exc).__name__}: {exc}"
