"""The pure half of delivering a batch: mask, validate, and split into writes and dead
letters. No I/O, so every routing decision is unit-testable without a port."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import attrs

from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.events import ChangeEvent
from cdc_domain.masking import MaskingConfigError, MaskingPolicy, MaskOnce
from cdc_domain.schema import TableSchema
from cdc_domain.validation import EventValidator

__all__ = ["RoutedBatch", "dead_letter_events", "mask_events", "route_events"]


@attrs.frozen(slots=True)
class RoutedBatch:
    valid: tuple[ChangeEvent, ...]
    dead_letters: tuple[DeadLetterEvent, ...]
    schemas: Mapping[str, TableSchema]


def mask_events(
    events: Iterable[ChangeEvent],
    *,
    masking: MaskingPolicy | MaskOnce,
    destination: str,
    now: dt.datetime,
) -> tuple[list[ChangeEvent], list[DeadLetterEvent]]:
    """Mask every event before anything else sees it, dead letters included.

    An event the policy refuses to mask (a key column configured with an action that
    would merge rows) is dead-lettered with every classified value redacted, keys too:
    a dead letter queue must not become the one place unmasked data is kept.
    """
    masked, refused = mask_apart(events, masking)
    return masked, refused_letters(refused, masking=masking, destination=destination, now=now)


def mask_apart(
    events: Iterable[ChangeEvent], masking: MaskingPolicy | MaskOnce
) -> tuple[list[ChangeEvent], list[tuple[ChangeEvent, MaskingConfigError]]]:
    """The masked events, and apart those the policy refused to mask, with why."""
    masked: list[ChangeEvent] = []
    refused: list[tuple[ChangeEvent, MaskingConfigError]] = []
    apply = masking.apply
    for event in events:
        try:
            masked.append(apply(event))
        except MaskingConfigError as exc:
            refused.append((event, exc))
    return masked, refused


def refused_letters(
    refused: Iterable[tuple[ChangeEvent, MaskingConfigError]],
    *,
    masking: MaskingPolicy | MaskOnce,
    destination: str,
    now: dt.datetime,
) -> list[DeadLetterEvent]:
    """Dead letters for the events the policy refused to mask, every classified value
    redacted (see :func:`mask_events`)."""
    return [
        DeadLetterEvent.for_event(
            masking.redact_classified(event),
            reason=FailureReason.MASKING_ERROR,
            error=str(exc),
            failed_at=now,
            destination=destination,
        )
        for event, exc in refused
    ]


def route_events(
    events: Iterable[ChangeEvent],
    *,
    schemas: Mapping[str, TableSchema],
    validator: EventValidator,
    destination: str,
    kind: DestinationKind,
    now: dt.datetime,
) -> RoutedBatch:
    """Keep the (already masked) events ``kind`` can hold; the rest become dead letters
    for ``destination``, carrying the column details a user needs to fix the cause."""
    valid: list[ChangeEvent] = []
    dead: list[DeadLetterEvent] = []
    used: dict[str, TableSchema] = {}
    for event in events:
        schema = schemas.get(event.qualified_table)
        if schema is None:
            dead.append(
                DeadLetterEvent.for_event(
                    event,
                    reason=FailureReason.UNKNOWN_TABLE,
                    error=f"no schema is known for {event.qualified_table}",
                    failed_at=now,
                    destination=destination,
                )
            )
            continue
        result = validator.validate(event, schema, kind)
        if result.valid:
            valid.append(event)
            used[event.qualified_table] = schema
            continue
        details = {"table": schema.qualified_name, "schema_version": schema.version}
        details.update(result.details)
        dead.append(
            DeadLetterEvent.for_event(
                event,
                reason=result.reason or FailureReason.VALIDATION_ERROR,
                error=result.message,
                failed_at=now,
                destination=destination,
                schema_details=details,
            )
        )
    return RoutedBatch(tuple(valid), tuple(dead), used)


def dead_letter_events(
    events: Iterable[ChangeEvent],
    *,
    reason: FailureReason,
    error: str,
    destination: str,
    now: dt.datetime,
    details: Mapping[str, object] | None = None,
) -> list[DeadLetterEvent]:
    return [
        DeadLetterEvent.for_event(
            event,
            reason=reason,
            error=error,
            failed_at=now,
            destination=destination,
            schema_details=dict(details or {}),
        )
        for event in events
    ]
