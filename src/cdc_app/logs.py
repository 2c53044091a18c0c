"""Structured logging to stderr, as console lines or JSON objects.

Log calls pass counts, names and positions only, never event values: a column's value
may be one that masking exists to keep out of every output, logs included. Errors are
logged as their type and message, never as tracebacks, whose renderers can show local
variables.
"""

from __future__ import annotations

import logging
import sys

import structlog

from cdc_app.settings import LogFormat, LoggingSettings

__all__ = ["configure_logging"]


def configure_logging(settings: LoggingSettings) -> None:
    renderer: structlog.typing.Processor
    if settings.format is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.level.name]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
