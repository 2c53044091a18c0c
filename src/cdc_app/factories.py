"""Each adapter made from its settings: one typed function per port, a case per ``type``.

Configuration keys are the user's words and constructor arguments the adapter's; this
module is the one place that maps one to the other, so either can change alone, and
mypy checks every call. Adapters are imported inside their case: a build without a
database's extra still runs with the others (:mod:`cdc_app.availability` says what to
install when that database is asked for).
"""

from __future__ import annotations

from typing import TypedDict, TypeVar

from cdc_app.settings import (
    CassandraSettings,
    CassandraSource,
    ClickHouseDestination,
    ClickHouseOffsets,
    DestinationSettings,
    JsonlDeadLetters,
    JsonlDestination,
    JsonlSchemaHistory,
    MemoryDeadLetters,
    MemoryDestination,
    MemoryOffsets,
    MemorySchemaHistory,
    MemorySource,
    PostgresDeadLetters,
    PostgresDestination,
    PostgresOffsets,
    PostgresSettings,
    SettingError,
    Settings,
    SqliteOffsets,
    TimescaleDbDestination,
    TimescaleDbSettings,
    TimescaleMode,
)
from cdc_domain.ports import (
    ChangeSource,
    Clock,
    DeadLetterQueue,
    OffsetStore,
    SchemaHistory,
    SchemaSource,
    Sink,
    SnapshotSource,
)

__all__ = [
    "change_source",
    "dead_letter_queue",
    "offset_store",
    "schema_history",
    "schema_source",
    "sink",
    "snapshot_source",
]

T = TypeVar("T")


def _section(value: T | None, name: str) -> T:
    """A database section the adapter connects with; the configuration check reports a
    missing one first, this is the last line of defence."""
    if value is None:
        raise SettingError(f"the '{name}' section (or CDC_{name.upper()}_* variables) is missing")
    return value


def schema_source(settings: Settings) -> SchemaSource:
    source = settings.source
    match source:
        case MemorySource():
            from cdc_adapters.memory import MemorySchemaSource

            return MemorySchemaSource()
        case CassandraSource():
            from cdc_adapters.cassandra import CassandraSchemaSource

            cassandra = _section(settings.cassandra, "cassandra")
            return CassandraSchemaSource(
                hosts=cassandra.hosts,
                username=cassandra.username,
                password=cassandra.password,
                schema_refresh_s=source.schema_refresh_s,
            )


def change_source(settings: Settings, schemas: SchemaSource) -> ChangeSource:
    """The source decodes with ``schemas``' catalog: one per agent (see
    :class:`~cdc_adapters.cassandra.CassandraSchemaSource`)."""
    source = settings.source
    match source:
        case MemorySource():
            from cdc_adapters.memory import MemoryChangeSource

            return MemoryChangeSource(source.partition_id)
        case CassandraSource():
            from cdc_adapters.cassandra import CassandraChangeSource, CassandraSchemaSource

            cassandra = _section(settings.cassandra, "cassandra")
            if source.reader_process:
                return _reader_process(source, cassandra)
            if not isinstance(schemas, CassandraSchemaSource):
                raise TypeError("a cassandra source decodes with the cassandra schema source")
            return CassandraChangeSource(
                partition_id=source.partition_id,
                cdc_raw_dir=cassandra.cdc_raw_dir,
                schemas=schemas,
                tables=source.tables,
                archive_dir=source.archive_dir,
                cdc_total_space_mb=cassandra.cdc_total_space_mb,
            )


def _reader_process(source: CassandraSource, cassandra: CassandraSettings) -> ChangeSource:
    """The reader builds its own schema source in its process, from the same settings."""
    from cdc_adapters.cassandra.reader_process import ProcessChangeSource, ReaderSpec

    return ProcessChangeSource(
        ReaderSpec(
            partition_id=source.partition_id,
            cdc_raw_dir=cassandra.cdc_raw_dir,
            hosts=tuple(cassandra.hosts),
            username=cassandra.username,
            password=cassandra.password,
            schema_refresh_s=source.schema_refresh_s,
            tables=tuple(source.tables),
            archive_dir=source.archive_dir,
            cdc_total_space_mb=cassandra.cdc_total_space_mb,
        )
    )


def snapshot_source(settings: Settings, schemas: SchemaSource) -> SnapshotSource:
    """Snapshots read through ``schemas``' connection: one per agent."""
    source = settings.source
    match source:
        case MemorySource():
            from cdc_adapters.memory import MemorySnapshotSource

            return MemorySnapshotSource()
        case CassandraSource():
            from cdc_adapters.cassandra import CassandraSchemaSource, CassandraSnapshotSource

            if not isinstance(schemas, CassandraSchemaSource):
                raise TypeError("a cassandra snapshot reads through the cassandra schema source")
            return CassandraSnapshotSource(
                schemas,
                consistency=settings.snapshot.consistency.value,
                page_rows=settings.snapshot.page_rows,
            )


def sink(destination: DestinationSettings, settings: Settings) -> Sink:
    match destination:
        case JsonlDestination():
            from cdc_adapters.local import JsonLinesSink

            return JsonLinesSink(destination.path, name=destination.name)
        case MemoryDestination():
            from cdc_adapters.memory import MemorySink

            return MemorySink(destination.name)
        case PostgresDestination():
            from cdc_adapters.postgres import PostgresSink

            postgres = _section(settings.postgres, "postgres")
            return PostgresSink(
                name=destination.name,
                dsn=postgres.dsn,
                **_pool(postgres),
                schema=destination.schema,
                table=destination.table,
                metadata_schema=destination.metadata_schema,
                drop_columns=destination.drop_columns,
                purge_expired_after=destination.purge_expired_after,
            )
        case ClickHouseDestination():
            from cdc_adapters.clickhouse import ClickHouseSink

            clickhouse = _section(settings.clickhouse, "clickhouse")
            return ClickHouseSink(
                name=destination.name,
                url=clickhouse.url,
                user=clickhouse.user,
                password=clickhouse.password,
                database_prefix=destination.database_prefix,
                drop_columns=destination.drop_columns,
                purge_expired_after=destination.purge_expired_after,
            )
        case TimescaleDbDestination():
            return _timescale_sink(destination, settings)


def _timescale_sink(destination: TimescaleDbDestination, settings: Settings) -> Sink:
    from cdc_adapters.timescaledb import TimescaleHistorySink, TimescaleMirrorSink

    timescaledb = _section(settings.timescaledb, "timescaledb")
    dsn = timescaledb.dsn
    if destination.mode is TimescaleMode.MIRROR:
        return TimescaleMirrorSink(
            name=destination.name,
            dsn=dsn,
            **_pool(timescaledb),
            schema=destination.schema,
            table=destination.table,
            metadata_schema=destination.metadata_schema,
            fallback_to_plain_tables=destination.fallback_to_plain_tables,
            drop_columns=destination.drop_columns,
            purge_expired_after=destination.purge_expired_after,
        )
    return TimescaleHistorySink(
        name=destination.name,
        dsn=dsn,
        **_pool(timescaledb),
        schema=destination.schema,
        table=destination.table,
        metadata_schema=destination.metadata_schema,
        fallback_to_plain_tables=destination.fallback_to_plain_tables,
        chunk_interval=destination.chunk_interval,
    )


class _PoolArguments(TypedDict):
    pool_min_size: int
    pool_max_size: int
    pool_idle_s: float | None
    connect_timeout: float


def _pool(section: PostgresSettings | TimescaleDbSettings) -> _PoolArguments:
    """A sink's pool from its database section: a pool that closes idle connections
    keeps none open (the point of closing them is to let another client in)."""
    return {
        "pool_min_size": 0 if section.pool_idle_s is not None else 1,
        "pool_max_size": section.pool_max_size,
        "pool_idle_s": section.pool_idle_s,
        "connect_timeout": section.connect_timeout_s,
    }


def offset_store(settings: Settings, clock: Clock) -> OffsetStore:
    offsets = settings.offsets
    match offsets:
        case SqliteOffsets():
            from cdc_adapters.local import SqliteOffsetStore

            return SqliteOffsetStore(offsets.path, clock)
        case MemoryOffsets():
            from cdc_adapters.memory import MemoryOffsetStore

            return MemoryOffsetStore(clock)
        case PostgresOffsets():
            from cdc_adapters.postgres import PostgresOffsetStore

            dsn = _section(settings.postgres, "postgres").dsn
            return PostgresOffsetStore(dsn=dsn, schema=offsets.schema, clock=clock)
        case ClickHouseOffsets():
            from cdc_adapters.clickhouse import ClickHouseOffsetStore

            clickhouse = _section(settings.clickhouse, "clickhouse")
            return ClickHouseOffsetStore(
                url=clickhouse.url,
                user=clickhouse.user,
                password=clickhouse.password,
                clock=clock,
                database=offsets.database,
                table=offsets.table,
            )


def dead_letter_queue(settings: Settings) -> DeadLetterQueue:
    queue = settings.dead_letters
    match queue:
        case JsonlDeadLetters():
            from cdc_adapters.local import JsonLinesDeadLetterQueue

            return JsonLinesDeadLetterQueue(queue.path)
        case MemoryDeadLetters():
            from cdc_adapters.memory import MemoryDeadLetterQueue

            return MemoryDeadLetterQueue()
        case PostgresDeadLetters():
            from cdc_adapters.postgres import PostgresDeadLetterQueue

            dsn = _section(settings.postgres, "postgres").dsn
            return PostgresDeadLetterQueue(dsn=dsn, schema=queue.schema)


def schema_history(settings: Settings) -> SchemaHistory:
    history = settings.schema_history
    match history:
        case JsonlSchemaHistory():
            from cdc_adapters.local import JsonLinesSchemaHistory

            return JsonLinesSchemaHistory(history.path)
        case MemorySchemaHistory():
            from cdc_adapters.memory import MemorySchemaHistory as MemoryHistory

            return MemoryHistory()
