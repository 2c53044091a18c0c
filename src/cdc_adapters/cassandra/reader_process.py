"""The commit log reader in a process of its own (``source.reader_process: true``).

Reading and decoding segments is the one stage every destination shares, and in one
interpreter it runs under the same lock as the sinks' encoding. In a child process it
runs on another core, and reads the batch after the one just served while the parent
masks, validates and writes it. The price is copying each batch between the processes
(about 12 us of CPU per event, pickled in the child and unpickled in the parent): worth it
only where a core is free, which is why it is off by default (ADR 0012).

Nothing that must survive a crash lives in the child: positions are the destinations',
committed by the parent's sinks, so a reader killed at any point is started again and
reads from wherever the next request says. A parent that dies closes its end of the pipe,
and the child, waiting on it or answering it, ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import pickle
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import attrs

from cdc_adapters.cassandra.cdc_raw_space import measure_cdc_raw
from cdc_adapters.cassandra.change_source import CassandraChangeSource
from cdc_adapters.cassandra.schema_source import CassandraSchemaSource
from cdc_domain.errors import FailureClass, SourceError, TransientError, classify, describe_error
from cdc_domain.events import SourcePosition
from cdc_domain.ports import ChangeBatch, SourceStorage

__all__ = ["ProcessChangeSource", "ReaderSpec"]

_READ, _ACKNOWLEDGE, _CLOSE = "read", "acknowledge", "close"


@attrs.frozen(kw_only=True)
class ReaderSpec:
    """What the child builds its own schema and change sources from: plain values, so
    they cross to a spawned process (a driver connection cannot)."""

    partition_id: str
    cdc_raw_dir: str
    hosts: tuple[str, ...]
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    schema_refresh_s: float = 60.0
    tables: tuple[str, ...] = ()
    archive_dir: str | None = None
    cdc_total_space_mb: int | None = None


class ProcessChangeSource:
    """A :class:`CassandraChangeSource` served by a child process, one request at a time.

    A reader that exits (killed, out of memory) fails the request in flight with a
    :class:`TransientError`, which the runner retries; the retry starts a new reader.
    """

    def __init__(self, spec: ReaderSpec, *, start_timeout_s: float = 120.0) -> None:
        self._spec = spec
        self._start_timeout_s = start_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._connection: Connection | None = None
        self._lock = asyncio.Lock()
        self._exchanging: asyncio.Future[tuple[str, Any]] | None = None

    @property
    def partition_id(self) -> str:
        return self._spec.partition_id

    @property
    def pid(self) -> int | None:
        """The running reader's process id (None before the first request)."""
        return self._process.pid if self._process is not None else None

    async def read(self, after: SourcePosition | None, max_events: int) -> ChangeBatch:
        batch = await self._call((_READ, after, max(1, max_events)))
        assert isinstance(batch, ChangeBatch)
        return batch

    async def acknowledge(self, position: SourcePosition) -> None:
        await self._call((_ACKNOWLEDGE, position))

    async def storage(self) -> SourceStorage:
        """Measured here, not asked of the reader: a health check must not queue behind
        a long read."""
        spec = self._spec
        return await asyncio.to_thread(
            measure_cdc_raw, Path(spec.cdc_raw_dir), spec.cdc_total_space_mb
        )

    async def aclose(self) -> None:
        async with self._lock:
            await self._settled()
            connection, process = self._connection, self._process
            self._connection = self._process = None
            if connection is not None:
                with contextlib.suppress(OSError):
                    _send(connection, (_CLOSE,))
                connection.close()
            if process is not None:
                await asyncio.to_thread(_stop, process)

    async def _call(self, request: tuple[Any, ...]) -> Any:
        async with self._lock:
            connection = await self._started()
            await self._settled()
            exchanging = asyncio.ensure_future(asyncio.to_thread(_exchange, connection, request))
            self._exchanging = exchanging
            try:
                reply = await asyncio.shield(exchanging)
            except (EOFError, OSError) as exc:
                code = await self._lost()
                raise TransientError(
                    f"the commit log reader process exited (code {code}); a new one is "
                    "started for the next read"
                ) from exc
        status, value = reply
        if status == "ok":
            return value
        transient, message = value
        raise (TransientError if transient else SourceError)(f"commit log reader: {message}")

    async def _settled(self) -> None:
        """Let an exchange whose caller was cancelled take its reply first: requests and
        replies pair up only one at a time."""
        exchanging, self._exchanging = self._exchanging, None
        if exchanging is not None:
            await asyncio.gather(exchanging, return_exceptions=True)

    async def _started(self) -> Connection:
        if self._connection is not None:
            return self._connection
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve,
            args=(theirs, self._spec),
            name=f"cdc-reader-{self._spec.partition_id}",
            daemon=True,
        )
        process.start()
        theirs.close()
        self._process, self._connection = process, ours
        ready = await asyncio.to_thread(ours.poll, self._start_timeout_s)
        if not ready:
            await self._lost()
            raise TransientError(
                f"the commit log reader process did not start within {self._start_timeout_s:.0f}s"
            )
        try:
            await asyncio.to_thread(ours.recv_bytes)
        except (EOFError, OSError) as exc:
            code = await self._lost()
            raise TransientError(f"the commit log reader process exited (code {code})") from exc
        return ours

    async def _lost(self) -> int | None:
        """Forget a reader that stopped answering; its exit code."""
        connection, process = self._connection, self._process
        self._connection = self._process = None
        if connection is not None:
            connection.close()
        if process is None:
            return None
        await asyncio.to_thread(_stop, process)
        code: int | None = process.exitcode
        return code


def _exchange(connection: Connection, request: tuple[Any, ...]) -> tuple[str, Any]:
    _send(connection, request)
    reply: tuple[str, Any] = _receive(connection)
    return reply


def _send(connection: Connection, message: tuple[Any, ...]) -> None:
    """One message, either way: requests, replies and their batches."""
    connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(connection: Connection) -> Any:
    return pickle.loads(connection.recv_bytes())


def _stop(process: Any, grace_s: float = 10.0) -> None:
    process.join(grace_s)
    if process.is_alive():
        process.kill()
        process.join()


# -- the child ---------------------------------------------------------------------------


def serve(connection: Connection, spec: ReaderSpec) -> None:
    """The reader process's entry point: answer requests until the parent closes. A
    terminal's Ctrl-C or a service manager's SIGTERM reaches the whole process group:
    the agent stops in order and closes the pipe, which ends the reader, so the reader
    itself ignores them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(_Reader(connection, spec).run())


class _Reader:
    """Builds the source, answers each request, and reads a full batch's successor while
    the parent works on it."""

    def __init__(self, connection: Connection, spec: ReaderSpec) -> None:
        self._connection = connection
        self._schemas = CassandraSchemaSource(
            hosts=spec.hosts,
            username=spec.username,
            password=spec.password,
            schema_refresh_s=spec.schema_refresh_s,
        )
        self._source = CassandraChangeSource(
            partition_id=spec.partition_id,
            cdc_raw_dir=spec.cdc_raw_dir,
            schemas=self._schemas,
            tables=spec.tables,
            archive_dir=spec.archive_dir,
            cdc_total_space_mb=spec.cdc_total_space_mb,
        )
        self._ahead: tuple[tuple[SourcePosition | None, int], asyncio.Task[ChangeBatch]] | None
        self._ahead = None

    async def run(self) -> None:
        try:
            await asyncio.to_thread(_send, self._connection, ("ready", None))
            while (request := await asyncio.to_thread(self._receive)) is not None:
                if request[0] == _CLOSE:
                    break
                try:
                    reply: tuple[str, Any] = ("ok", await self._handle(request))
                except Exception as exc:  # every failure goes back to the parent, typed
                    transient = classify(exc) is FailureClass.TRANSIENT
                    reply = ("error", (transient, describe_error(exc)))
                await asyncio.to_thread(_send, self._connection, reply)
        except (EOFError, OSError):
            pass  # the parent is gone: nothing to answer
        finally:
            await self._settle_ahead()
            await self._source.aclose()
            await self._schemas.aclose()

    async def _handle(self, request: tuple[Any, ...]) -> Any:
        if request[0] == _ACKNOWLEDGE:
            await self._settle_ahead()
            await self._source.acknowledge(request[1])
            return None
        _, after, max_events = request
        batch = await self._batch(after, max_events)
        if len(batch.events) >= max_events and batch.end is not None:
            key = (batch.end, max_events)
            self._ahead = (key, asyncio.create_task(self._source.read(*key)))
        return batch

    async def _batch(self, after: SourcePosition | None, max_events: int) -> ChangeBatch:
        """The batch read ahead when it is the one asked for and still full (a full batch
        is final: nothing can be added before its end); else a fresh read."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            key, task = ahead
            with contextlib.suppress(Exception):
                batch = await task
                if key == (after, max_events) and len(batch.events) >= max_events:
                    return batch
        return await self._source.read(after, max_events)

    async def _settle_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            with contextlib.suppress(Exception):
                await ahead[1]

    def _receive(self) -> tuple[Any, ...] | None:
        """The next request; None once the parent has closed its end."""
        try:
            request: tuple[Any, ...] = _receive(self._connection)
        except EOFError:
            return None
        return request
