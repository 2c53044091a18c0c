"""The kinds of destination the pipeline writes to, as far as the domain cares."""

from __future__ import annotations

import enum

__all__ = ["DestinationKind", "DroppedColumns"]


class DestinationKind(enum.Enum):
    """What a destination can hold decides type mapping and schema-change verdicts.

    ``FILE`` (JSON Lines) and ``MEMORY`` store the lossless JSON form of any value.
    """

    POSTGRES = "postgres"
    CLICKHOUSE = "clickhouse"
    TIMESCALEDB = "timescaledb"
    FILE = "file"
    MEMORY = "memory"


class DroppedColumns(enum.Enum):
    """What a destination does when a Cassandra column (or table) is dropped: ``KEEP``
    (the default: data is never destroyed unless asked) stops writing it and keeps what
    it holds; ``DROP`` drops it there too."""

    KEEP = "keep"
    DROP = "drop"
