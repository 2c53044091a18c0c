"""What happens to commit log entries of tables the schema does not know.

A node that ran for months holds entries of tables dropped before the agent started:
their schema is gone, so they can never be decoded, and one dead letter per entry
would flood the queue. The policy decides:

* ``dead_letter``: every entry is a dead letter (its raw bytes kept);
* ``count`` (default): the first ``kept_in_full`` entries of each table id are dead
  letters, and one running tally per table id counts them all;
* ``skip``: nothing is stored (metrics still count them).

A tally is stored in the dead letter queue itself, as one entry per source partition and
table id rewritten under the same id, so every queue keeps it without a new port and
``cdc-app dlq list`` shows it. Counting is exact across restarts and destinations: the
tally remembers the furthest position it counted, and every destination reads the same
entries in the same order, so an entry at or before it is one already counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from cdc_domain.dead_letters import DeadLetterEvent, FailureReason, dead_letter_id
from cdc_domain.events import SourcePosition
from cdc_domain.ports import DeadLetterQueue

__all__ = ["UnknownTablePolicy", "UnknownTableTally", "UnknownTables", "stored_tallies"]

_TALLY = "unknown_table_tally"
"""The ``schema_details`` key that marks a dead letter as a tally."""


class UnknownTablePolicy(enum.Enum):
    DEAD_LETTER = "dead_letter"
    COUNT = "count"
    SKIP = "skip"


@attrs.frozen(slots=True)
class UnknownTableTally:
    """Every entry of one unknown table id seen on one source partition.

    ``kept_until`` is the position of the last entry kept in full (None: none kept), so
    re-reading one of those rewrites it rather than dropping it.
    """

    partition_id: str
    table_id: str
    entries: int
    kept: int
    first_position: SourcePosition
    last_position: SourcePosition
    kept_until: SourcePosition | None
    first_seen: dt.datetime
    last_seen: dt.datetime

    def counted(self, entry: DeadLetterEvent, *, keep: bool, now: dt.datetime) -> UnknownTableTally:
        assert entry.position is not None
        return attrs.evolve(
            self,
            entries=self.entries + 1,
            kept=self.kept + keep,
            last_position=entry.position,
            kept_until=entry.position if keep else self.kept_until,
            last_seen=now,
        )

    def as_dead_letter(self) -> DeadLetterEvent:
        return DeadLetterEvent(
            dlq_id=dead_letter_id(
                FailureReason.UNKNOWN_TABLE,
                None,
                f"tally:{self.partition_id}:{self.table_id}",
                None,
            ),
            reason=FailureReason.UNKNOWN_TABLE,
            error=(
                f"{self.entries} commit log entries of unknown table id {self.table_id} "
                f"(a table dropped before its schema was read); the first {self.kept} "
                "are kept in full"
            ),
            failed_at=self.last_seen,
            position=self.last_position,
            schema_details={
                _TALLY: True,
                "partition_id": self.partition_id,
                "table_id": self.table_id,
                "entries": self.entries,
                "kept": self.kept,
                "first_position": _unstructure(self.first_position),
                "last_position": _unstructure(self.last_position),
                "kept_until": _unstructure(self.kept_until) if self.kept_until else None,
                "first_seen": self.first_seen.isoformat(),
            },
        )

    @classmethod
    def from_dead_letter(cls, entry: DeadLetterEvent) -> UnknownTableTally | None:
        details = entry.schema_details
        if not details.get(_TALLY):
            return None
        kept_until = details.get("kept_until")
        return cls(
            partition_id=str(details["partition_id"]),
            table_id=str(details["table_id"]),
            entries=int(details["entries"]),
            kept=int(details["kept"]),
            first_position=_structure(details["first_position"]),
            last_position=_structure(details["last_position"]),
            kept_until=_structure(kept_until) if kept_until else None,
            first_seen=dt.datetime.fromisoformat(str(details["first_seen"])),
            last_seen=entry.failed_at,
        )

    @classmethod
    def first(
        cls, partition_id: str, entry: DeadLetterEvent, now: dt.datetime
    ) -> UnknownTableTally:
        assert entry.position is not None
        return cls(
            partition_id=partition_id,
            table_id=_table_id(entry),
            entries=0,
            kept=0,
            first_position=entry.position,
            last_position=entry.position,
            kept_until=None,
            first_seen=now,
            last_seen=now,
        )


class UnknownTables:
    """Sifts a batch's source failures by the policy, keeping the tallies up to date.

    Several destinations sift concurrently (each reads its own batches); one lock makes
    each tally's read, count and write one step.
    """

    def __init__(
        self,
        *,
        policy: UnknownTablePolicy,
        kept_in_full: int,
        dead_letters: DeadLetterQueue,
        partition_id: str,
    ) -> None:
        self._policy = policy
        self._kept_in_full = kept_in_full
        self._dlq = dead_letters
        self._partition = partition_id
        self._tallies: dict[str, UnknownTableTally] | None = None
        self._lock = asyncio.Lock()

    async def sift(
        self, failures: Sequence[DeadLetterEvent], now: dt.datetime
    ) -> list[DeadLetterEvent]:
        """The failures to store, with the tallies they changed: other failures as they
        are, unknown tables' as the policy says."""
        unknown = [f for f in failures if _is_unknown_table(f)]
        others = [f for f in failures if not _is_unknown_table(f)]
        if not unknown or self._policy is UnknownTablePolicy.DEAD_LETTER:
            return list(failures)
        if self._policy is UnknownTablePolicy.SKIP:
            return others
        async with self._lock:
            tallies = await self._loaded()
            kept, changed = self._count(tallies, unknown, now)
        return [*others, *kept, *(tally.as_dead_letter() for tally in changed)]

    def _count(
        self,
        tallies: dict[str, UnknownTableTally],
        unknown: Iterable[DeadLetterEvent],
        now: dt.datetime,
    ) -> tuple[list[DeadLetterEvent], list[UnknownTableTally]]:
        kept: list[DeadLetterEvent] = []
        changed: dict[str, UnknownTableTally] = {}
        for entry in unknown:
            assert entry.position is not None
            table_id = _table_id(entry)
            tally = tallies.get(table_id) or UnknownTableTally.first(self._partition, entry, now)
            if tally.entries and entry.position <= tally.last_position:
                if tally.kept_until is not None and entry.position <= tally.kept_until:
                    kept.append(entry)  # read again after a restart: stored again, same id
                # Stored again too: the batch that counted it may have failed to store it
                # (the process lives on, its count in memory) and is being retried.
                changed[table_id] = tally
                continue
            keep = tally.kept < self._kept_in_full
            if keep:
                kept.append(entry)
            tallies[table_id] = changed[table_id] = tally.counted(entry, keep=keep, now=now)
        return kept, list(changed.values())

    async def _loaded(self) -> dict[str, UnknownTableTally]:
        if self._tallies is None:
            stored = await stored_tallies(self._dlq, self._partition)
            self._tallies = {tally.table_id: tally for tally in stored}
        return self._tallies


async def stored_tallies(
    dead_letters: DeadLetterQueue, partition_id: str | None = None
) -> list[UnknownTableTally]:
    """The tallies kept in ``dead_letters`` (of one source partition, when given), in
    the order their tables were first seen."""
    stored = await dead_letters.list(reason=FailureReason.UNKNOWN_TABLE, include_replayed=True)
    tallies = [
        tally
        for tally in map(UnknownTableTally.from_dead_letter, stored)
        if tally is not None and partition_id in (None, tally.partition_id)
    ]
    return sorted(tallies, key=lambda t: (t.partition_id, t.first_position))


def _is_unknown_table(entry: DeadLetterEvent) -> bool:
    return (
        entry.reason is FailureReason.UNKNOWN_TABLE
        and entry.event is None
        and entry.position is not None
        and not entry.schema_details.get(_TALLY)
    )


def _table_id(entry: DeadLetterEvent) -> str:
    return str(entry.schema_details.get("table_id", "?"))


def _unstructure(position: SourcePosition) -> list[int]:
    return [position.segment_id, position.offset, position.index]


def _structure(value: Any) -> SourcePosition:
    segment_id, offset, index = (int(part) for part in value)
    return SourcePosition(segment_id, offset, index)
