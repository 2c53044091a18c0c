"""asyncpg's errors sorted into the domain's: retry what time can fix, reject the rest.

SQLSTATE classes decide: connection trouble (08), resources (53), an operator or a
restart (57), transaction conflicts (40, and 55P03 lock timeouts) and unique
violations (23505: only a race between writers creating the same object or row can
raise one here, every write being an upsert) are transient. Data exceptions (22) and
other integrity violations (23) are poison: the events that cause them are found and
rejected. Anything else (a syntax error, a missing column) is a bug or a schema drift
that retrying cannot fix either, and surfaces as a :class:`SinkError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import asyncpg
import attrs
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from cdc_domain.errors import TableError, TransientError

__all__ = ["RetryPolicy", "is_poison", "is_transient", "refused_table", "with_retries"]

T = TypeVar("T")

_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_STATES = ("55P03", "23505")
_POISON_CLASSES = ("22", "23")
_POISON_STATES = ("42804", "42846")  # datatype mismatch, cannot coerce
_ACCOUNT_STATES = ("42501",)  # insufficient privilege: the agent's role, not one table


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", "") or "")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | OSError | TimeoutError | asyncio.TimeoutError):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc).lower()
        return "closed" in text or "connection" in text or "pool" in text
    state = _sqlstate(exc)
    if state in _TRANSIENT_STATES:
        return True
    return state[:2] in _TRANSIENT_CLASSES


def is_poison(exc: BaseException) -> bool:
    """Errors one or more values cause; retrying the same values fails the same way."""
    if isinstance(exc, asyncpg.DataError) and not _sqlstate(exc):
        return True  # the driver could not encode an argument
    state = _sqlstate(exc)
    if state in _TRANSIENT_STATES:
        return False
    return state[:2] in _POISON_CLASSES or state in _POISON_STATES


@attrs.frozen(slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    Gives up after ``attempts`` tries or ``max_seconds``, whichever comes first, so a
    dead server turns into a :class:`TransientError` the pipeline can report, instead
    of a write that hangs.
    """

    attempts: int = 5
    initial_wait: float = 0.1
    max_wait: float = 5.0
    max_seconds: float = 30.0


async def with_retries(policy: RetryPolicy, operation: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``operation``; retry transient failures; raise TransientError when exhausted."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_seconds),
        wait=wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait),
        retry=retry_if_exception(is_transient),
        reraise=False,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await operation()
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        raise TransientError(f"{what} failed after retries: {cause!r}") from cause
    raise AssertionError("unreachable: tenacity either returns or raises")


@contextlib.contextmanager
def refused_table(destination: str, table: str) -> Iterator[None]:
    """Statements on one table: a failure that concerns that table's structure (SQLSTATE
    class 42, an undefined column or a conflicting definition, say: the mirror changed
    by hand) becomes its :class:`TableError`, so the table pauses and the others go on.
    Poison values, transient failures and the agent's own privileges pass unchanged."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        state = _sqlstate(exc)
        if state[:2] == "42" and state not in _ACCOUNT_STATES and not is_poison(exc):
            raise TableError(f"{destination}: {type(exc).__name__}: {exc}", table=table) from exc
        raise
