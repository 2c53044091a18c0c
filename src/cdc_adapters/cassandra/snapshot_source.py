"""The SnapshotSource port over CQL: a table read by token range, every cell with its
write time and the TTL it has left.

Each range is one ``SELECT`` paged by the driver: ``token(pk) > ? AND token(pk) <= ?``,
selecting for every static and regular column its value, ``WRITETIME`` and ``TTL``.
Cassandra 5.0 answers those for non-frozen collections and UDTs too, one entry per
element (field); Cassandra 4.x refuses them there, so on 4.x such columns are read
without, and the elements get the row's lowest write time (see
:mod:`cdc_domain.snapshot_rows`). Counter columns have no write time at all; the
use case does not snapshot counter tables.

Rows come back as bytes (:mod:`cdc_adapters.cassandra.raw_rows`) and are decoded with
the commit log reader's own decoders, so a value read here is the value the stream
carries for the same cell. The next page is asked for before the current one is
handed on, so reading overlaps with writing it.

The session is the schema source's connection's (one cluster connection per agent),
with its own execution profile: the consistency level asked for, requests to this
node, which is a replica of every range it owns.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import gc
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs

from cdc_adapters.cassandra.codec import (
    ValueDecoder,
    key_decoder,
    split_collection,
    split_fields,
    value_decoder,
)
from cdc_adapters.cassandra.driver import CassandraConnection
from cdc_adapters.cassandra.schema_source import CassandraSchemaSource
from cdc_domain.errors import SourceError, TransientError
from cdc_domain.schema import ColumnDefinition, ColumnKind, TableSchema
from cdc_domain.snapshot_rows import SnapshotCell, SnapshotCollection, SnapshotElement, SnapshotRow
from cdc_domain.tokens import RingRange, TokenRange

__all__ = ["CassandraSnapshotSource"]

_PLAIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _quote(name: str) -> str:
    return name if _PLAIN_NAME.match(name) else '"' + name.replace('"', '""') + '"'


def _int(raw: bytes | None) -> int | None:
    return None if raw is None or not raw else int.from_bytes(raw, "big", signed=True)


def _ints(raw: bytes | None) -> list[int | None]:
    """A ``list<bigint>``/``list<int>``: WRITETIME or TTL of a non-frozen column."""
    if raw is None or not raw:
        return []
    return [_int(item) for item in split_collection(raw, 1)]


@attrs.define
class _Last:
    partition: list[bytes | None] | None = None


@attrs.frozen
class _Column:
    """How one selected column is read: its value's decoding and what follows it."""

    name: str
    static: bool
    decode: ValueDecoder
    timed: bool
    kind: str | None = None
    element: Callable[[bytes], Any] | None = None
    element_value: Callable[[bytes], Any] | None = None
    fields: tuple[tuple[str, ValueDecoder], ...] = ()

    @property
    def width(self) -> int:
        return 3 if self.timed else 1


class _ReadPlan:
    """The statement for one schema version, and how its rows turn into snapshot rows."""

    def __init__(self, schema: TableSchema, *, element_times: bool) -> None:
        self.schema = schema
        self.partition = [(c.name, value_decoder(c.type)) for c in schema.partition_key]
        self.clustering = [(c.name, value_decoder(c.type)) for c in schema.clustering]
        self.columns = [
            _plan(c, element_times)
            for c in schema.columns
            if c.kind in (ColumnKind.REGULAR, ColumnKind.STATIC) and c.type.name != "counter"
        ]
        selected = [_quote(c.name) for c in schema.primary_key]
        for column in self.columns:
            name = _quote(column.name)
            selected.append(name)
            if column.timed:
                selected += [f"WRITETIME({name})", f"TTL({name})"]
        token = ", ".join(_quote(c.name) for c in schema.partition_key)
        self.keys = len(self.partition) + len(self.clustering)
        self.clustering_at = tuple(enumerate(self.clustering, start=len(self.partition)))
        simple: list[tuple[int, str, ValueDecoder]] = []
        other: list[tuple[int, str, bool, _Column]] = []
        index = self.keys
        for column in self.columns:
            if column.kind is None and not column.static:
                simple.append((index, column.name, column.decode))
            else:
                other.append((index, column.name, column.static, column))
            index += column.width
        self.simple = tuple(simple)
        self.other = tuple(other)
        self.query = (
            f"SELECT {', '.join(selected)} FROM {_quote(schema.keyspace)}.{_quote(schema.table)} "
            f"WHERE token({token}) > ? AND token({token}) <= ?"
        )

    def rows(
        self, raw_rows: list[list[bytes | None]], read_at: dt.datetime, last: _Last
    ) -> builtins.list[SnapshotRow]:
        """The page's rows; a partition's static row before its first row (``last``
        holds the partition key read last, across pages).

        The loop is the snapshot's hottest: a row's regular simple cells are read
        through the precomputed ``(index, name, decode)`` tuples of :attr:`simple`, with
        names bound locally; static cells and collections go the longer way."""
        result: list[SnapshotRow] = []
        append = result.append
        partitions = len(self.partition)
        keys = self.keys
        has_clustering = bool(self.clustering)
        simple, other = self.simple, self.other
        from_bytes = int.from_bytes
        cell_of = SnapshotCell
        for raw in raw_rows:
            key_bytes = raw[:partitions]
            partition_key = self.partition_key(key_bytes)
            cells: dict[str, SnapshotCell] = {}
            statics: dict[str, SnapshotCell] = {}
            collections: dict[str, SnapshotCollection] = {}
            static_collections: dict[str, SnapshotCollection] = {}
            for index, name, decode in simple:
                value = raw[index]
                if value is not None:
                    stamp, ttl = raw[index + 1], raw[index + 2]
                    cells[name] = cell_of(
                        decode(value),
                        from_bytes(stamp, "big", signed=True) if stamp else 0,
                        from_bytes(ttl, "big", signed=True) if ttl else None,
                    )
            for index, name, static, column in other:
                value = raw[index]
                if value is None:
                    continue
                if column.kind is None:
                    statics[name] = _cell(column, raw[index : index + 3])
                else:
                    found = _collection(column, raw[index : index + column.width])
                    (static_collections if static else collections)[name] = found
            if (statics or static_collections) and key_bytes != last.partition:
                identity = _identity(key_bytes)
                append(
                    SnapshotRow(
                        partition_key, {}, statics, static_collections, identity, read_at, True
                    )
                )
            last.partition = key_bytes
            if has_clustering and raw[partitions] is None:
                continue  # a partition with static cells only: no row of its own
            clustering = {name: decode(raw[i] or b"") for i, (name, decode) in self.clustering_at}
            append(
                SnapshotRow(
                    partition_key,
                    clustering,
                    cells,
                    collections,
                    _identity(raw[:keys]),
                    read_at,
                )
            )
        return result

    def partition_key(self, key_bytes: list[bytes | None]) -> dict[str, Any]:
        return {name: d(b or b"") for (name, d), b in zip(self.partition, key_bytes, strict=True)}


def _plan(column: ColumnDefinition, element_times: bool) -> _Column:
    cql_type = column.type
    static = column.kind is ColumnKind.STATIC
    if not cql_type.is_multicell:
        return _Column(column.name, static, value_decoder(cql_type), timed=True)
    params = cql_type.params
    kind = cql_type.name
    if kind == "list":
        return _Column(
            column.name, static, value_decoder(cql_type), element_times, "list",
            element_value=value_decoder(params[0]),
        )  # fmt: skip
    if kind == "set":
        return _Column(
            column.name, static, value_decoder(cql_type), element_times, "set",
            element=key_decoder(params[0]),
        )  # fmt: skip
    if kind == "map":
        return _Column(
            column.name, static, value_decoder(cql_type), element_times, "map",
            element=key_decoder(params[0]), element_value=value_decoder(params[1]),
        )  # fmt: skip
    fields = tuple(zip(cql_type.field_names, (value_decoder(p) for p in params), strict=True))
    return _Column(
        column.name, static, value_decoder(cql_type), element_times, "udt", fields=fields
    )


def _cell(column: _Column, values: list[bytes | None]) -> SnapshotCell:
    value, stamp, ttl = values
    assert value is not None
    return SnapshotCell(column.decode(value), _int(stamp) or 0, _int(ttl))


def _collection(column: _Column, values: list[bytes | None]) -> SnapshotCollection:
    """A non-frozen collection or UDT, element by element, each with its write time and
    TTL where the server told them (one entry per element, in the value's order)."""
    raw = values[0]
    assert raw is not None
    assert column.kind is not None
    times = _ints(values[1]) if column.timed else []
    ttls = _ints(values[2]) if column.timed else []
    elements: list[SnapshotElement] = []
    if column.kind == "udt":
        for i, ((name, decode), field) in enumerate(
            zip(column.fields, split_fields(raw, len(column.fields)), strict=True)
        ):
            stamp = times[i] if i < len(times) else None
            if field is None or (column.timed and stamp is None):
                continue
            elements.append(SnapshotElement(name, decode(field), stamp, _at(ttls, i)))
        return SnapshotCollection("udt", tuple(elements))
    per = 2 if column.kind == "map" else 1
    items = split_collection(raw, per)
    for i in range(len(items) // per):
        first = items[i * per]
        assert first is not None
        stamp = times[i] if i < len(times) else None
        if column.kind == "list":
            assert column.element_value is not None
            element = SnapshotElement(i, column.element_value(first), stamp, _at(ttls, i))
        elif column.kind == "set":
            assert column.element is not None
            element = SnapshotElement(column.element(first), None, stamp, _at(ttls, i))
        else:
            assert column.element is not None
            assert column.element_value is not None
            value = items[i * per + 1]
            decoded = None if value is None else column.element_value(value)
            element = SnapshotElement(column.element(first), decoded, stamp, _at(ttls, i))
        elements.append(element)
    return SnapshotCollection(column.kind, tuple(elements))


def _at(values: list[int | None], index: int) -> int | None:
    return values[index] if index < len(values) else None


def _identity(key_bytes: list[bytes | None]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in key_bytes:
        data = part or b""
        digest.update(len(data).to_bytes(4, "big"))
        digest.update(data)
    return digest.hexdigest()


class CassandraSnapshotSource:
    """Tables of the cluster the schema source's node belongs to, read at
    ``consistency`` in pages of ``page_rows`` rows. ``element_times`` says whether to
    ask for the write times of non-frozen collections' elements; None: when the server
    allows it (Cassandra 5.0 and later)."""

    def __init__(
        self,
        schemas: CassandraSchemaSource,
        *,
        consistency: str = "LOCAL_QUORUM",
        page_rows: int = 1000,
        element_times: bool | None = None,
    ) -> None:
        self._connection: CassandraConnection = schemas.connection
        self._consistency = consistency
        self._page_rows = page_rows
        self._plans: dict[tuple[str, str], tuple[_ReadPlan, Any]] = {}
        self._element_times = element_times

    async def ring(self, keyspace: str) -> builtins.list[RingRange]:
        ranges = await asyncio.to_thread(self._connection.ring, keyspace)
        return [RingRange(TokenRange(start, end), mine) for start, end, mine in ranges]

    async def estimate(self, keyspace: str, table: str) -> int | None:
        return await asyncio.to_thread(self._connection.size_estimate, keyspace, table)

    async def read(
        self, schema: TableSchema, token_range: TokenRange
    ) -> AsyncIterator[builtins.list[SnapshotRow]]:
        plan, statement, session, profile = await self._prepared(schema)
        last = _Last()
        pending: asyncio.Future[Any] | None = self._fetch(
            session, statement, profile, token_range, None
        )
        while pending is not None:
            read_at = dt.datetime.now(dt.UTC)
            result = await pending
            paging_state = result.paging_state
            pending = (
                self._fetch(session, statement, profile, token_range, paging_state)
                if paging_state
                else None
            )
            # Decoding allocates objects per cell and no reference cycle: the cyclic
            # collector would only scan them again and again (see collapse.py).
            collecting = gc.isenabled()
            gc.disable()
            try:
                rows = plan.rows(result.current_rows, read_at, last)
            except BaseException:
                if pending is not None:
                    pending.cancel()
                raise
            finally:
                if collecting:
                    gc.enable()
            yield rows

    async def aclose(self) -> None:
        """The connection is the schema source's, which closes it."""

    async def _prepared(self, schema: TableSchema) -> tuple[_ReadPlan, Any, Any, str]:
        session, profile = await asyncio.to_thread(self._connection.raw_session, self._consistency)
        if self._element_times is None:
            version = await asyncio.to_thread(self._connection.release_version)
            self._element_times = int(version.split(".")[0]) >= 5
        key = (schema.qualified_name, f"{schema.version}/{self._element_times}")
        found = self._plans.get(key)
        if found is None:
            plan = _ReadPlan(schema, element_times=self._element_times)
            statement = await asyncio.to_thread(_prepare, self._connection, session, plan.query)
            statement.fetch_size = self._page_rows
            found = self._plans[key] = (plan, statement)
        return found[0], found[1], session, profile

    def _fetch(
        self,
        session: Any,
        statement: Any,
        profile: str,
        token_range: TokenRange,
        paging_state: bytes | None,
    ) -> asyncio.Future[Any]:
        """One page, asked for now; the future settles on the event loop."""
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[Any] = loop.create_future()
        node = self._connection.node
        try:
            future = session.execute_async(
                statement,
                (token_range.start, token_range.end),
                execution_profile=profile,
                paging_state=paging_state,
            )
        except Exception as exc:
            settled.set_exception(_translated(exc, node))
            return settled

        def done(_: Any) -> None:
            loop.call_soon_threadsafe(_settle, settled, future.result, None)

        def failed(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, settled, None, _translated(exc, node))

        future.add_callbacks(done, failed)
        return settled


def _settle(
    settled: asyncio.Future[Any], result: Callable[[], Any] | None, error: BaseException | None
) -> None:
    if settled.done():
        return
    if error is not None:
        settled.set_exception(error)
        return
    assert result is not None
    settled.set_result(result())


def _prepare(connection: CassandraConnection, session: Any, query: str) -> Any:
    from cassandra import InvalidRequest

    try:
        return session.prepare(query)
    except InvalidRequest as exc:
        raise SourceError(
            f"cassandra at {connection.node} refused the snapshot query: {exc}"
        ) from exc
    except Exception as exc:
        raise _translated(exc, connection.node) from exc


def _translated(exc: BaseException, node: str) -> Exception:
    """The driver's failures as the domain's: what time may fix is transient (timeouts,
    replicas down, connections lost); a refused query is not."""
    from cassandra import DriverException, InvalidRequest, RequestExecutionException
    from cassandra.cluster import NoHostAvailable

    if isinstance(exc, InvalidRequest):
        return SourceError(f"cassandra at {node} refused the snapshot query: {exc}")
    if isinstance(exc, DriverException | RequestExecutionException | NoHostAvailable | OSError):
        return TransientError(f"cassandra at {node}: {exc}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
