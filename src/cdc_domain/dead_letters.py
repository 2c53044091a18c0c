"""Events that could not be delivered, kept with everything needed to fix and replay them."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from collections.abc import Iterable
from typing import Any

import attrs

from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.identity import write_id

__all__ = [
    "DeadLetterEvent",
    "DeadLetterStatus",
    "FailureReason",
    "dead_letter_id",
    "select_dead_letters",
]


class FailureReason(enum.Enum):
    SCHEMA_INCOMPATIBLE = "SCHEMA_INCOMPATIBLE"
    PROCESSING_ERROR = "PROCESSING_ERROR"
    UNKNOWN_TABLE = "UNKNOWN_TABLE"
    DECODE_ERROR = "DECODE_ERROR"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    MASKING_ERROR = "MASKING_ERROR"
    SNAPSHOT_ERROR = "SNAPSHOT_ERROR"
    """A snapshot's token range that kept failing: no event, its bounds in the details."""


class DeadLetterStatus(enum.Enum):
    PENDING = "PENDING"
    REPLAYED = "REPLAYED"


def dead_letter_id(
    reason: FailureReason,
    destination: str | None,
    subject: str | None,
    position: SourcePosition | None,
) -> str:
    """A stable id, so dead-lettering the same failure twice stores it once: after a
    restart re-reads a segment, and when several nodes read copies of one write.

    ``subject`` names what failed: an event's write id (:func:`write_id`), the same in
    every replica's copy, so one bad write is one dead letter however many agents saw
    it; None for raw entries, which are named by their ``position`` instead.
    """
    text = f"{reason.value}|{destination or ''}|{subject or ''}|{position or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@attrs.frozen(slots=True)
class DeadLetterEvent:
    """A failed event (or undecodable raw bytes, which have no event yet).

    ``destination`` is None for failures before routing (decode errors, unknown tables),
    which concern every destination alike.
    """

    dlq_id: str
    reason: FailureReason
    error: str
    failed_at: dt.datetime
    event: ChangeEvent | None = None
    destination: str | None = None
    schema_details: dict[str, Any] = attrs.field(factory=dict)
    raw: bytes | None = None
    position: SourcePosition | None = None
    retry_count: int = 0
    status: DeadLetterStatus = DeadLetterStatus.PENDING

    @classmethod
    def for_event(
        cls,
        event: ChangeEvent,
        *,
        reason: FailureReason,
        error: str,
        failed_at: dt.datetime,
        destination: str | None,
        schema_details: dict[str, Any] | None = None,
        retry_count: int = 0,
    ) -> DeadLetterEvent:
        """The dead letter of an event, named by its write: the copies of one bad write
        that several nodes read share it, as do re-reads after a restart. The entry
        keeps the copy stored last (its event id and position say which node's)."""
        return cls(
            dlq_id=dead_letter_id(reason, destination, write_id(event), None),
            reason=reason,
            error=error,
            failed_at=failed_at,
            event=event,
            destination=destination,
            schema_details=dict(schema_details or {}),
            position=event.position,
            retry_count=retry_count,
        )

    @classmethod
    def for_raw(
        cls,
        raw: bytes,
        *,
        reason: FailureReason,
        error: str,
        failed_at: dt.datetime,
        position: SourcePosition,
        schema_details: dict[str, Any] | None = None,
    ) -> DeadLetterEvent:
        """The dead letter of bytes that never became an event, named by its position.
        Without decoding there is no write to name, so copies of one undecodable
        mutation on several nodes stay one entry each: telling them apart from
        different mutations would need the decoding that failed."""
        return cls(
            dlq_id=dead_letter_id(reason, None, None, position),
            reason=reason,
            error=error,
            failed_at=failed_at,
            raw=raw,
            position=position,
            schema_details=dict(schema_details or {}),
        )

    @property
    def table(self) -> str | None:
        if self.event is not None:
            return self.event.qualified_table
        table = self.schema_details.get("table")
        return str(table) if table else None


def select_dead_letters(
    entries: Iterable[DeadLetterEvent],
    *,
    destination: str | None = None,
    reason: FailureReason | None = None,
    include_replayed: bool = False,
    limit: int | None = None,
) -> list[DeadLetterEvent]:
    """The entries a ``DeadLetterQueue.list`` call asks for, for queues that filter in
    memory; pending only unless ``include_replayed``."""
    found = [
        e
        for e in entries
        if (destination is None or e.destination == destination)
        and (reason is None or e.reason is reason)
        and (include_replayed or e.status is DeadLetterStatus.PENDING)
    ]
    return found if limit is None else found[:limit]
