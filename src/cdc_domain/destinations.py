"""The kinds of destination the pipeline writes to, as far as the domain cares."""

from __future__ import annotations

import enum

__all__ = ["DestinationKind"]


class DestinationKind(enum.Enum):
    """What a destination can hold decides type mapping and schema-change verdicts.

    ``FILE`` (JSON Lines) and ``MEMORY`` store the lossless JSON form of any value.
    """

    POSTGRES = "postgres"
    CLICKHOUSE = "clickhouse"
    TIMESCALEDB = "timescaledb"
    FILE = "file"
    MEMORY = "memory"
