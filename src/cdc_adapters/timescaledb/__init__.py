"""TimescaleDB adapters: the change-history sink and the mirror sink (the PostgreSQL
sink on a TimescaleDB database), both checking for the extension at start-up.
Offsets and dead letters use the PostgreSQL adapters on the same database."""

from cdc_adapters.timescaledb.extension import TimescaleInfo, TimescaleMissingError
from cdc_adapters.timescaledb.history_sink import TimescaleHistorySink
from cdc_adapters.timescaledb.mirror_sink import TimescaleMirrorSink

__all__ = [
    "TimescaleHistorySink",
    "TimescaleInfo",
    "TimescaleMirrorSink",
    "TimescaleMissingError",
]
