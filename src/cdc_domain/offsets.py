"""Positions a destination has durably taken, per source partition (Cassandra node)."""

from __future__ import annotations

import datetime as dt

import attrs

from cdc_domain.events import SourcePosition

__all__ = ["Checkpoint", "OffsetRecord"]


@attrs.frozen(slots=True)
class Checkpoint:
    """What one batch moves a destination to: every event up to ``position`` of
    ``partition_id`` is delivered; ``events`` is how many this batch delivered."""

    partition_id: str
    position: SourcePosition
    events: int


@attrs.frozen(slots=True)
class OffsetRecord:
    destination: str
    partition_id: str
    position: SourcePosition
    events_processed: int
    updated_at: dt.datetime
