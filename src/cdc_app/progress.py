"""What each destination's loop has done lately, for health, metrics and status.

The loops write it, the HTTP endpoint reads it, all on one event loop: plain mutable
objects, no locks.
"""

from __future__ import annotations

import datetime as dt

import attrs

from cdc_domain.errors import FailureClass
from cdc_domain.events import SourcePosition
from cdc_domain.replication import DeliveryOutcome
from cdc_domain.schema_evolution import BlockedTable

__all__ = ["DestinationProgress"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@attrs.define
class DestinationProgress:
    """One destination's recent history.

    ``caught_up`` is true after a successful batch that found less than a full batch:
    the destination then holds everything the source had, and its lag is 0.
    ``last_written_micros`` is the Cassandra write time of the newest event it wrote;
    ``blocked`` the tables it cannot follow, as of its latest batch. ``failure`` is the
    class of its last failure while it keeps failing: a permanent one means it stopped
    until ``retry_in_seconds`` (None: until the next start).
    """

    name: str
    position: SourcePosition | None = None
    batches: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    retry_in_seconds: float | None = None
    failure: FailureClass | None = None
    caught_up: bool = False
    last_written_micros: int | None = None
    blocked: tuple[BlockedTable, ...] = ()

    def succeeded(self, outcome: DeliveryOutcome, *, full: bool) -> None:
        self.position = outcome.position
        self.batches += 1
        self.delivered += outcome.delivered
        self.dead_lettered += outcome.dead_lettered
        self.blocked = outcome.blocked
        newest = outcome.last_timestamp_micros
        if newest is not None:
            self.last_written_micros = max(newest, self.last_written_micros or newest)
        self.consecutive_failures = 0
        self.last_error = None
        self.retry_in_seconds = None
        self.failure = None
        self.caught_up = not full

    def failed(self, error: str, failure: FailureClass, retry_in_seconds: float) -> None:
        self.batches += 1
        self.consecutive_failures += 1
        self.last_error = error
        self.failure = failure
        self.retry_in_seconds = None if retry_in_seconds == float("inf") else retry_in_seconds
        self.caught_up = False

    @property
    def halted(self) -> bool:
        """Stopped on a permanent error, waiting for an operator or its long retry."""
        return self.failure is FailureClass.PERMANENT

    def lag_seconds(self, now: dt.datetime) -> float | None:
        """How far behind the source this destination is, None before it wrote
        anything while not caught up (unknown)."""
        if self.caught_up:
            return 0.0
        if self.last_written_micros is None:
            return None
        written = _EPOCH + dt.timedelta(microseconds=self.last_written_micros)
        return max(0.0, (now - written).total_seconds())
