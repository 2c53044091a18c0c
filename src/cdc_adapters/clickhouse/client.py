"""The HTTP connection to one ClickHouse server: queries, inserts, errors and retries.

aiochclient is the driver (DDL, pings). It parses every statement with sqlparse, which
costs about a millisecond of CPU for an INSERT naming a table's columns and refuses
statements over 10,000 tokens, so inserts (one per table and batch, the hot path) and
queries go through the same aiohttp session directly. Every failure is translated
here into the domain's errors; transient ones are retried with exponential backoff and
jitter, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import aiohttp
import attrs
from aiochclient import ChClient, ChClientError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from cdc_adapters.clickhouse.column_types import ServerFeatures
from cdc_domain.errors import CdcError, SinkError, TableError, TransientError

__all__ = ["ClickHouseClient", "RetryPolicy", "refused_table"]

T = TypeVar("T")

# Server error codes that mean "try again later": timeouts, overload, too many parts,
# memory pressure, network trouble, a table briefly read-only, shutting down.
_TRANSIENT_CODES = frozenset(
    {159, 160, 164, 202, 203, 209, 210, 241, 242, 252, 285, 319, 394, 425, 999}
)
_CODE = re.compile(r"Code:\s*(\d+)")


@attrs.frozen(slots=True)
class RetryPolicy:
    """Bounded retries: give up after ``attempts`` tries or ``max_seconds``, whichever first."""

    attempts: int = 5
    max_seconds: float = 30.0
    initial_wait: float = 0.1
    max_wait: float = 5.0


# Codes that concern the whole server or the agent's account, not one table: unknown user,
# wrong or missing password, address not allowed, access denied.
_ACCOUNT_CODES = frozenset({192, 193, 194, 195, 291, 497, 516})


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code a failure reports, if any."""
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found else None


def refused_table(exc: SinkError, table: str) -> SinkError:
    """A permanent failure of a statement on ``table`` as that table's
    :class:`TableError` (the table pauses, the destination goes on), unless it concerns
    the agent's account, which stops the whole destination."""
    if isinstance(exc, TableError):
        return exc
    if error_code(exc) in _ACCOUNT_CODES:
        return exc
    return TableError(str(exc), table=table)


def translate(exc: BaseException, what: str) -> CdcError:
    """A driver or network failure as the domain's retryable or poison error."""
    if isinstance(exc, ChClientError):
        code = error_code(exc)
        message = f"ClickHouse {what} failed: {str(exc).strip()[:2000]}"
        if code in _TRANSIENT_CODES or (code is None and "status code 5" in str(exc)):
            return TransientError(message)
        return SinkError(message)
    if isinstance(exc, aiohttp.ClientResponseError) and exc.status < 500:
        return SinkError(f"ClickHouse {what} failed: HTTP {exc.status} {exc.message}")
    return TransientError(f"ClickHouse {what} failed: {type(exc).__name__}: {exc}")


_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ChClientError)


class ClickHouseClient:
    """One ClickHouse server over HTTP; owns its aiohttp session (close with ``aclose``)."""

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_seconds: float = 60.0,
    ) -> None:
        self._url = url if url.endswith("/") else url + "/"
        self._retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._headers: dict[str, str] = {}
        if user:
            self._headers["X-ClickHouse-User"] = user
        if password:
            self._headers["X-ClickHouse-Key"] = password
        self._session: aiohttp.ClientSession | None = None
        self._driver: ChClient | None = None
        self._features: ServerFeatures | None = None

    def _connect(self) -> tuple[aiohttp.ClientSession, ChClient]:
        if self._session is None or self._driver is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._driver = ChClient(
                self._session, url=self._url, user=self._headers.get("X-ClickHouse-User"),
                password=self._headers.get("X-ClickHouse-Key"), database="default",
            )  # fmt: skip
        return self._session, self._driver

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            try:
                return await attempt()
            except _NETWORK_ERRORS as exc:
                raise translate(exc, what) from exc

        policy = self._retry
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_seconds),
            wait=wait_exponential_jitter(
                multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.initial_wait
            ),
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        )
        return await retrying(once)

    async def features(self) -> ServerFeatures:
        """The server's type features, read once per client."""
        if self._features is None:
            rows = await self.select("SELECT version()")
            self._features = ServerFeatures.parse(rows[0][0])
        return self._features

    async def execute(self, sql: str) -> None:
        """A statement without a result (DDL, mutations)."""
        await self._retrying("statement", lambda: self._connect()[1].execute(sql))

    async def insert(self, into: str, body: bytes) -> None:
        """``INSERT INTO <into> FORMAT TabSeparated`` with a ready TSV body, in one request."""
        query = f"INSERT INTO {into} FORMAT TabSeparated"
        await self._retrying("insert", lambda: self._post(body, query=query))

    async def select(self, sql: str) -> list[list[str]]:
        """Rows of a query as unescaped TabSeparated fields (``\\N`` stays as is)."""
        raw = await self._retrying(
            "query", lambda: self._post(f"{sql} FORMAT TabSeparated".encode())
        )
        text = raw.decode("utf-8", "surrogateescape")
        return [
            [unescape(field) for field in line.split("\t")] for line in text.split("\n") if line
        ]

    async def select_lines(self, sql: str) -> AsyncIterator[str]:
        """The rows of a one-column query, unescaped, streamed as they arrive (not
        retried: a caller that fails part way starts again)."""
        session, _ = self._connect()
        body = f"{sql} FORMAT TabSeparated".encode()
        try:
            async with session.post(self._url, data=body, headers=self._headers) as resp:
                if resp.status != 200:
                    text = (await resp.read()).decode(errors="replace")
                    raise ChClientError(text or f"status code {resp.status}")
                pending = b""
                async for chunk in resp.content.iter_chunked(1 << 16):
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        yield unescape(line.decode("utf-8", "surrogateescape"))
        except _NETWORK_ERRORS as exc:
            raise translate(exc, "query") from exc

    async def _post(self, body: bytes, *, query: str | None = None) -> bytes:
        """POST ``body`` (a query, or the data of ``query``)."""
        session, _ = self._connect()
        params = None if query is None else {"query": query}
        async with session.post(self._url, params=params, data=body, headers=self._headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ChClientError(body.decode(errors="replace") or f"status code {resp.status}")
            return body

    async def ping(self) -> bool:
        try:
            return bool(await self._connect()[1].is_alive())
        except _NETWORK_ERRORS:
            return False

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = self._driver = None


_UNESCAPES = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "0": "\0", "\\": "\\"}


def unescape(field: str) -> str:
    if "\\" not in field or field == "\\N":
        return field
    out: list[str] = []
    chars = iter(field)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append(_UNESCAPES.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)
