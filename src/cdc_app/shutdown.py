"""Stopping on SIGINT and SIGTERM, within a bound.

The first signal asks the pipeline to stop after its batches in flight. A second one
is the way out when something hangs: the process exits at once. So does a stop that
overruns ``shutdown_timeout_s`` plus a few seconds to close connections. Exiting at
once loses nothing: offsets move only after a destination confirmed, so a restart
re-reads whatever was cut short.
"""

from __future__ import annotations

import asyncio
import os
import signal

import structlog

__all__ = ["CLOSE_ALLOWANCE_SECONDS", "install_stop_signals"]

CLOSE_ALLOWANCE_SECONDS = 5.0
"""How long closing connections may take after the drain, before the process just exits."""

_OVERRUN_EXIT = 1


def install_stop_signals(
    stop: asyncio.Event, timeout_s: float, log: structlog.typing.FilteringBoundLogger
) -> None:
    """SIGINT or SIGTERM sets ``stop``; a second one, or a stop that lasts longer than
    ``timeout_s`` plus :data:`CLOSE_ALLOWANCE_SECONDS`, ends the process at once."""
    loop = asyncio.get_running_loop()

    def overrun() -> None:
        log.error("stop overran its bound, exiting now", timeout_s=timeout_s)
        os._exit(_OVERRUN_EXIT)

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second signal, exiting now", signal=signum.name)
            os._exit(128 + signum)
        log.info("stopping after the batches in flight", signal=signum.name, timeout_s=timeout_s)
        stop.set()
        loop.call_later(timeout_s + CLOSE_ALLOWANCE_SECONDS, overrun)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
