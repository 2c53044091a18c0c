"""The TimescaleDB sink a ``timescaledb`` destination's ``mode`` names (ADR 0005).

``mode: history`` (default) keeps one row per change (:class:`TimescaleHistorySink`);
``mode: mirror`` keeps the current state as the PostgreSQL sink does
(:class:`TimescaleMirrorSink`).
"""

from __future__ import annotations

from typing import Any

from cdc_adapters.timescaledb.history_sink import TimescaleHistorySink
from cdc_adapters.timescaledb.mirror_sink import TimescaleMirrorSink

__all__ = ["MODES", "timescale_sink"]

MODES = ("history", "mirror")


def timescale_sink(
    *, mode: str = "history", **options: Any
) -> TimescaleHistorySink | TimescaleMirrorSink:
    """The sink of ``mode``, made from a ``timescaledb`` destination's settings.

    The settings hold the keys of both modes, so each class is given only its own:
    ``chunk_interval`` is the history's, ``drop_columns`` the mirror's.
    """
    if mode == "history":
        options.pop("drop_columns", None)
        return TimescaleHistorySink(**options)
    if mode == "mirror":
        options.pop("chunk_interval", None)
        return TimescaleMirrorSink(**options)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
