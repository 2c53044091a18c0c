"""The long-running pipeline: one loop per destination, and one that frees the source.

Each destination reads its own next batch from its own committed offset (ADR 0002), so
a slow or failing destination holds back nobody and keeps its place. A failed batch is
classified (:func:`~cdc_domain.errors.classify`):

* transient (connection lost, timeout, deadlock): retried from that offset with
  exponential backoff and jitter (tenacity), reported through its progress, until the
  destination answers again and catches up;
* permanent (a bug, a rejected statement, a permission error): retrying soon would only
  repeat it, so the destination stops where it is and ``/health`` reports it DOWN with
  the error. It tries again after ``permanent_retry_s`` (or at the next start, once an
  operator fixed the cause) from the same offset: nothing is lost meanwhile.

Poison events never fail a batch: the use case dead-letters them and delivers the rest.
A loop holds one batch at a time, so memory is bounded by ``max_batch_events`` per
destination however far one lags.

Batching by size and time: a loop whose batch came back full reads again at once (a
flood goes through in full batches); one that found less waits ``max_batch_delay_ms``
first, so what arrives meanwhile makes the next batch and a trickle is delivered
within that delay.

A destination's loop may be held before its first batch (``holds``): until its snapshot
is planned (:mod:`cdc_app.snapshots`), which must see whether it had streamed before.

A stop never interrupts a batch: each loop finishes the one in flight, commits, and
ends; the source is acknowledged a last time. Batches still running after
``shutdown_timeout_s`` are abandoned; their offsets did not move, so they are read
again at the next start and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Mapping, Sequence

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from cdc_app.metrics import Metrics
from cdc_app.progress import DestinationProgress
from cdc_app.settings import PipelineSettings
from cdc_domain.errors import FailureClass, classify, describe_error
from cdc_domain.replication import DeliveryOutcome, Destination, ReplicateBatch

__all__ = ["Runner"]

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
        holds: Mapping[str, asyncio.Event] | None = None,
    ) -> None:
        self._holds = dict(holds or {})
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
        progress = self._progress[destination.name]
        log = self._log.bind(destination=destination.name)
        hold = self._holds.get(destination.name)
        if hold is not None and not hold.is_set():
            await _first(stop, hold)
        retrying = self._retrying(stop, progress, log)
        while not stop.is_set():
            try:
                outcome: DeliveryOutcome = await retrying(self._batch, destination)
            except Exception as exc:
                if stop.is_set():
                    return  # given up while stopping: the batch is read again next start
                await _pause(stop, self._halted(exc, progress, log))
                continue
            pause = self._succeeded(outcome, progress, log)
            if pause:
                await _pause(stop, pause)

    async def _batch(self, destination: Destination) -> DeliveryOutcome:
        started = time.perf_counter()
        try:
            return await self._replicate.deliver(destination, self._pipeline.max_batch_events)
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.batch_seconds.labels(destination.name).observe(elapsed)

    def _retrying(
        self, stop: asyncio.Event, progress: DestinationProgress, log: Logger
    ) -> AsyncRetrying:
        """Transient failures retried from the committed offset, with a growing, jittered
        pause that a stop cuts short; anything else is raised to the loop."""
        pipeline = self._pipeline

        def record(state: RetryCallState) -> None:
            assert state.outcome is not None
            assert state.next_action is not None
            error = state.outcome.exception()
            assert error is not None
            self._failed(error, state.next_action.sleep, progress, log)

        async def sleep(seconds: float) -> None:
            await _pause(stop, seconds)

        return AsyncRetrying(
            retry=retry_if_exception(lambda exc: classify(exc) is FailureClass.TRANSIENT),
            wait=wait_exponential_jitter(
                multiplier=pipeline.retry_initial_ms / 1000,
                max=pipeline.retry_max_ms / 1000,
                jitter=pipeline.retry_initial_ms / 1000,
            ),
            stop=lambda _: stop.is_set(),
            sleep=sleep,
            before_sleep=record,
            reraise=True,
        )

    def _succeeded(
        self, outcome: DeliveryOutcome, progress: DestinationProgress, log: Logger
    ) -> float:
        """Record a successful batch; the pause before the next one."""
        if progress.consecutive_failures:
            log.info("destination recovered", failed_batches=progress.consecutive_failures)
        # The batch ended before the data did (it was full, or the rest of an older read).
        full = outcome.more
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

    def _failed(
        self, error: BaseException, pause: float, progress: DestinationProgress, log: Logger
    ) -> None:
        """Record a transient failure, retried from the same offset after ``pause``."""
        self._count_failure(error, FailureClass.TRANSIENT, pause, progress)
        log.warning(
            "batch failed, retrying from the committed offset",
            error=describe_error(error),
            failed_batches=progress.consecutive_failures,
            retry_in_s=round(pause, 3),
            position=str(progress.position) if progress.position else None,
        )

    def _halted(self, error: BaseException, progress: DestinationProgress, log: Logger) -> float:
        """Record a permanent failure; how long the destination stays stopped (forever,
        until the next start, when no long retry is configured)."""
        retry_s = self._pipeline.permanent_retry_s
        pause = float("inf") if retry_s is None else float(retry_s)
        self._count_failure(error, FailureClass.PERMANENT, pause, progress)
        log.error(
            "destination stopped on a permanent error; its position is kept",
            error=describe_error(error),
            error_at=_where(error),
            retry_in_s=retry_s,
            position=str(progress.position) if progress.position else None,
        )
        return pause

    def _count_failure(
        self,
        error: BaseException,
        failure: FailureClass,
        pause: float,
        progress: DestinationProgress,
    ) -> None:
        progress.failed(describe_error(error), failure, pause)
        self._metrics.retries.labels(progress.name, failure.value).inc()
        self._metrics.destination_failing.labels(progress.name).set(progress.consecutive_failures)

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


async def _first(*events: asyncio.Event) -> None:
    """Until any of ``events`` is set."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` (inf: until stopped), or less when a stop is requested."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), None if seconds == float("inf") else seconds)


def _where(error: BaseException) -> str | None:
    """Where ``error`` was raised, as file, line and function: enough to find a bug,
    without a traceback's local values."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"
