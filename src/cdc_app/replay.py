"""Re-driving dead letters into their destination once their cause is fixed.

Pending entries are validated again against their table's current schema and written
through their destination's sink, the way a batch is; what goes through is marked
replayed, so a second replay finds nothing to do. What fails again stays pending, with
its retry count raised and the new error, written back under the same ``dlq_id``.

Events reach the DLQ already masked; a replay writes them as stored, since masking twice
would hash a hash. A MASKING_ERROR entry holds every classified value redacted (the
policy could not mask it), so it is never replayed: writing it would replace real data
with redactions. Its row is replicated again by its next change once the rules are fixed.
Replayed events do not move the destination's offset: their batch carries no checkpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import attrs

from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.errors import EventsRejectedError, SchemaIncompatibleError
from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.ports import Clock, DeadLetterQueue, SchemaSource, Sink, SinkBatch
from cdc_domain.schema import TableSchema
from cdc_domain.validation import EventValidator

__all__ = ["DeadLetterReplay", "ReplayReport", "unreplayable"]


@attrs.frozen
class ReplayReport:
    """``skipped`` entries cannot be replayed: raw bytes that never became an event,
    entries of no destination, or of a destination that is not configured."""

    replayed: int = 0
    failed: tuple[DeadLetterEvent, ...] = ()
    skipped: tuple[DeadLetterEvent, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """What the endpoint answers and ``cdc-app dlq replay`` prints."""
        return {
            "replayed": self.replayed,
            "failed": [{"dlq_id": e.dlq_id, "error": e.error} for e in self.failed],
            "skipped": [{"dlq_id": e.dlq_id, "why": unreplayable(e)} for e in self.skipped],
        }


def unreplayable(entry: DeadLetterEvent) -> str:
    """Why a skipped entry cannot be replayed."""
    if entry.event is None:
        return "raw bytes that never became an event"
    if entry.reason is FailureReason.MASKING_ERROR:
        return "stored redacted: the masking rules could not mask it"
    if entry.destination is None:
        return "it belongs to no destination"
    return f"destination {entry.destination!r} is not configured"


class DeadLetterReplay:
    def __init__(
        self,
        *,
        dead_letters: DeadLetterQueue,
        schemas: SchemaSource,
        sinks: Sequence[Sink],
        clock: Clock,
        validator: EventValidator | None = None,
    ) -> None:
        self._dlq = dead_letters
        self._schemas = schemas
        self._sinks = {sink.name: sink for sink in sinks}
        self._clock = clock
        self._validator = validator or EventValidator()

    async def __call__(
        self, *, destination: str | None = None, reason: FailureReason | None = None
    ) -> ReplayReport:
        entries = await self._dlq.take_for_replay(destination=destination, reason=reason)
        skipped = [e for e in entries if not self._replayable(e)]
        replayable = sorted(
            (e for e in entries if self._replayable(e)), key=_destination_then_position
        )
        replayed: list[str] = []
        failed: list[DeadLetterEvent] = []
        for name, group in itertools.groupby(replayable, key=lambda e: e.destination):
            assert name is not None
            done, again = await self._replay(self._sinks[name], list(group))
            replayed.extend(done)
            failed.extend(again)
        if failed:
            await self._dlq.write(failed)
        if replayed:
            await self._dlq.mark_replayed(replayed)
        return ReplayReport(len(replayed), tuple(failed), tuple(skipped))

    def _replayable(self, entry: DeadLetterEvent) -> bool:
        return (
            entry.event is not None
            and entry.destination in self._sinks
            and entry.reason is not FailureReason.MASKING_ERROR
        )

    async def _replay(
        self, sink: Sink, entries: list[DeadLetterEvent]
    ) -> tuple[list[str], list[DeadLetterEvent]]:
        """The ids written, and the entries that failed again with their new error."""
        failed: list[DeadLetterEvent] = []
        pending: dict[str, DeadLetterEvent] = {}
        events: list[ChangeEvent] = []
        schemas: dict[str, TableSchema] = {}
        for entry in entries:
            assert entry.event is not None
            event, error = await self._prepared(entry, sink, schemas)
            if error is not None:
                failed.append(self._failed_again(entry, error))
            else:
                pending[event.event_id] = entry
                events.append(event)
        while events:
            try:
                await sink.write(SinkBatch(tuple(events), schemas, None))
                break
            except SchemaIncompatibleError as exc:
                bad = {e.event_id for e in events if e.qualified_table == exc.table}
                error = str(exc)
            except EventsRejectedError as exc:
                bad = set(exc.event_ids) & {e.event_id for e in events}
                error = str(exc)
            except Exception as exc:
                bad = {e.event_id for e in events}
                error = f"{type(exc).__name__}: {exc}"
            if not bad:
                bad = {e.event_id for e in events}
            failed.extend(self._failed_again(pending.pop(i), error) for i in bad)
            events = [e for e in events if e.event_id not in bad]
        return [entry.dlq_id for entry in pending.values()], failed

    async def _prepared(
        self, entry: DeadLetterEvent, sink: Sink, schemas: dict[str, TableSchema]
    ) -> tuple[ChangeEvent, str | None]:
        """The event as it would be written now, or the reason it still cannot be."""
        event = entry.event
        assert event is not None
        name = event.qualified_table
        schema = schemas.get(name) or await self._schemas.table(event.keyspace, event.table)
        if schema is None:
            return event, f"no schema is known for {name}"
        result = self._validator.validate(event, schema, sink.kind)
        if not result.valid:
            return event, result.message
        schemas[name] = schema
        return event, None

    def _failed_again(self, entry: DeadLetterEvent, error: str) -> DeadLetterEvent:
        return attrs.evolve(
            entry, error=error, retry_count=entry.retry_count + 1, failed_at=self._clock.now()
        )


def _destination_then_position(entry: DeadLetterEvent) -> tuple[str, SourcePosition]:
    assert entry.event is not None
    assert entry.destination is not None
    return entry.destination, entry.event.position
