"""TimescaleDB adapters: the change-history sink (or a mirror, reusing the PostgreSQL
sink). Offsets and dead letters use the PostgreSQL adapters on the same database."""

from cdc_adapters.timescaledb.extension import TimescaleInfo, TimescaleMissingError
from cdc_adapters.timescaledb.sink import MODES, TimescaleSink

__all__ = ["MODES", "TimescaleInfo", "TimescaleMissingError", "TimescaleSink"]
