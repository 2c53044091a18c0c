"""Where each configured destination stands: its offset, lag, events and dead letters.

Offsets and dead letters come from their stores, so the status is known whether the
pipeline runs or not; lag is only known to a running pipeline (it is measured on
delivered events), and is None otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cdc_app.progress import DestinationProgress
from cdc_domain.ports import Clock, DeadLetterQueue, OffsetStore
from cdc_domain.unknown_tables import stored_tallies

__all__ = ["DestinationStatus", "agent_positions", "destination_statuses", "unknown_tables"]


@attrs.frozen
class DestinationStatus:
    name: str
    partition_id: str
    position: str | None
    lag_seconds: float | None
    events_processed: int
    dead_letters_pending: int

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


async def destination_statuses(
    *,
    names: Sequence[str],
    partition_id: str,
    offsets: Mapping[str, OffsetStore],
    dead_letters: DeadLetterQueue,
    clock: Clock,
    progress: Mapping[str, DestinationProgress] | None = None,
) -> list[DestinationStatus]:
    """``offsets`` holds each destination's own store (see ``destination_offsets``)."""
    statuses = []
    for name in names:
        record = await offsets[name].load(name, partition_id)
        pending = await dead_letters.list(destination=name)
        running = (progress or {}).get(name)
        statuses.append(
            DestinationStatus(
                name=name,
                partition_id=partition_id,
                position=str(record.position) if record else None,
                lag_seconds=running.lag_seconds(clock.now()) if running else None,
                events_processed=record.events_processed if record else 0,
                dead_letters_pending=len(pending),
            )
        )
    return statuses


async def unknown_tables(dead_letters: DeadLetterQueue) -> list[dict[str, Any]]:
    """The running count of commit log entries of each unknown table id, per node."""
    return [
        {
            "partition_id": tally.partition_id,
            "table_id": tally.table_id,
            "entries": tally.entries,
            "kept_in_full": tally.kept,
            "first_position": str(tally.first_position),
            "last_position": str(tally.last_position),
            "last_seen": tally.last_seen.isoformat(timespec="seconds"),
        }
        for tally in await stored_tallies(dead_letters)
    ]


async def agent_positions(offsets: Mapping[str, OffsetStore]) -> list[dict[str, Any]]:
    """Where every agent (one per Cassandra node, each its own partition) stands in each
    destination, from the offset stores: one agent can tell how its peers are doing."""
    positions = []
    for name, store in offsets.items():
        for record in await store.list():
            if record.destination == name:
                positions.append(
                    {
                        "destination": name,
                        "partition_id": record.partition_id,
                        "position": str(record.position),
                        "events_processed": record.events_processed,
                        "updated_at": record.updated_at.isoformat(timespec="seconds"),
                    }
                )
    return sorted(positions, key=lambda p: (p["destination"], p["partition_id"]))
