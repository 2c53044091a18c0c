"""The domain's error hierarchy; adapters translate driver errors into these at their edge.

The split that matters is retryable (the same write may succeed later: back off and
retry, never advance the offset) versus poison (retrying cannot fix it: dead-letter it).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CdcError",
    "EventsRejectedError",
    "FailureClass",
    "SchemaIncompatibleError",
    "SinkError",
    "SourceError",
    "TableError",
    "TransientError",
    "classify",
    "describe_error",
]


class CdcError(Exception):
    """Base of every error the pipeline raises on purpose."""


class TransientError(CdcError):
    """The operation may succeed if retried later (connection lost, server overloaded)."""


class SourceError(CdcError):
    """The change source cannot go on (its directory vanished, it cannot be read)."""


class SinkError(CdcError):
    """A destination refused a write for a reason retrying will not fix."""


class TableError(SinkError):
    """A destination refuses one table (its DDL or its writes) for a reason retrying
    soon will not fix: that table pauses for that destination, the others go on."""

    def __init__(self, message: str, *, table: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.table = table
        self.details = dict(details or {})


class SchemaIncompatibleError(TableError):
    """A destination cannot follow a schema change, or hold a column's type."""


class EventsRejectedError(SinkError):
    """Some events of a batch are poison (bad value, constraint); the rest are fine.

    The sink has written nothing: the caller dead-letters ``event_ids`` and writes the
    remaining events again.
    """

    def __init__(self, message: str, event_ids: Sequence[str]):
        super().__init__(message)
        self.event_ids = tuple(event_ids)


class FailureClass(enum.Enum):
    """How a failed batch is handled. Poison events never get here: the use case
    dead-letters them and delivers the rest."""

    TRANSIENT = "transient"
    """Time may fix it (connection lost, timeout, deadlock): retry soon, with backoff."""
    PERMANENT = "permanent"
    """An operator must act (a bug, a rejected statement, a permission error): stop
    that destination where it is and say why."""


def classify(exc: BaseException) -> FailureClass:
    """Adapters translate their drivers' errors into :class:`TransientError`; the
    standard library's own connection and timeout errors mean the same. Anything
    else is a failure retrying soon cannot fix."""
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return FailureClass.TRANSIENT
    return FailureClass.PERMANENT


def describe_error(exc: BaseException) -> str:
    """An error as its type and message: adapters keep values out of their messages,
    and a traceback's renderer could show local variables, which may hold them."""
    return f"{type(exc).__name__}: {exc}"
