"""What a dead letter replay did, and why an entry cannot be replayed at all.

Events reach the dead letter queue already masked. A MASKING_ERROR entry holds every
classified value redacted (the policy could not mask it), so it is never replayed:
writing it would replace real data with redactions. Its row is replicated again by its
next change once the rules are fixed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import attrs

from cdc_domain.dead_letters import DeadLetterEvent, FailureReason

__all__ = ["ReplayReport", "unreplayable"]


def unreplayable(entry: DeadLetterEvent, destinations: Collection[str]) -> str | None:
    """Why ``entry`` cannot be replayed into any of ``destinations``; None when it can."""
    if entry.reason is FailureReason.SNAPSHOT_ERROR:
        command = entry.schema_details.get("command", "cdc-app snapshot")
        return f"a snapshot range, not an event: read it again with '{command}'"
    if entry.event is None:
        return "raw bytes that never became an event"
    if entry.reason is FailureReason.MASKING_ERROR:
        return "stored redacted: the masking rules could not mask it"
    if entry.destination is None:
        return "it belongs to no destination"
    if entry.destination not in destinations:
        return f"destination {entry.destination!r} is not configured"
    return None


@attrs.frozen
class ReplayReport:
    """``failed`` entries stay pending with their new error; ``skipped`` ones cannot be
    replayed (see :func:`unreplayable`) into ``destinations``, the configured ones."""

    replayed: int = 0
    failed: tuple[DeadLetterEvent, ...] = ()
    skipped: tuple[DeadLetterEvent, ...] = ()
    destinations: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """What the endpoint answers and ``cdc-app dlq replay`` prints."""
        return {
            "replayed": self.replayed,
            "failed": [{"dlq_id": e.dlq_id, "error": e.error} for e in self.failed],
            "skipped": [
                {"dlq_id": e.dlq_id, "why": unreplayable(e, self.destinations)}
                for e in self.skipped
            ],
        }
