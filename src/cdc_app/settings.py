"""The validated configuration: typed, frozen settings the container builds from.

Sections that pick an adapter (``source``, each destination, ``offsets``,
``dead_letters``) are unions keyed by their ``type``; each member holds only the keys
that type accepts, so a key another type would take is still reported as unknown.
A type named like a database section (``postgres``...) connects with that section.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from cdc_domain.destinations import DroppedColumns
from cdc_domain.unknown_tables import UnknownTablePolicy

__all__ = [
    "DATABASES",
    "TAGGED",
    "CassandraSettings",
    "CassandraSource",
    "ClickHouseDestination",
    "ClickHouseOffsets",
    "ClickHouseSettings",
    "DeadLetters",
    "DestinationSettings",
    "HealthSettings",
    "JsonlDeadLetters",
    "JsonlDestination",
    "JsonlSchemaHistory",
    "LogFormat",
    "LogLevel",
    "LoggingSettings",
    "MaskingSettings",
    "MemoryDeadLetters",
    "MemoryDestination",
    "MemoryOffsets",
    "MemorySchemaHistory",
    "MemorySource",
    "Offsets",
    "PipelineSettings",
    "PostgresDeadLetters",
    "PostgresDestination",
    "PostgresOffsets",
    "PostgresSettings",
    "ReadConsistency",
    "SchemaHistory",
    "SettingError",
    "Settings",
    "SnapshotMode",
    "SnapshotSettings",
    "Source",
    "SqliteOffsets",
    "TimescaleDbDestination",
    "TimescaleDbSettings",
    "TimescaleMode",
    "mask_secret",
    "mask_url",
]

_SECRET = "secret"
"""Field metadata key: ``"value"`` hides the whole value, ``"url"`` only its password."""

_MASK = "********"
_PASSWORD_PAIR = re.compile(r"(password\s*=\s*)('[^']*'|[^\s&;]+)", re.IGNORECASE)


class SettingError(ValueError):
    """A value that has the right type but not an acceptable content."""


def mask_url(url: str) -> str:
    """``url`` with its password hidden, in URL userinfo or ``password=`` pairs (libpq
    keyword DSNs and query strings)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        url = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{_MASK}@{host}"))
    return _PASSWORD_PAIR.sub(rf"\g<1>{_MASK}", url)


def mask_secret(field: attrs.Attribute[Any], value: Any) -> Any:
    """The printable form of a field's value: secrets masked, everything else as is."""
    kind = field.metadata.get(_SECRET)
    if not value or kind is None:
        return value
    if kind == "url":
        return mask_url(str(value))
    return _MASK


def _hidden(value: object) -> str:
    return _MASK if value else repr(value)


def _url_repr(value: object) -> str:
    return repr(mask_url(str(value)))


_HIDDEN = {_SECRET: "value"}
_URL = {_SECRET: "url"}


def _at_least(minimum: int) -> Callable[[object, attrs.Attribute[Any], int | None], None]:
    """A lower bound; None passes, where a field allows it (``null``: no limit)."""

    def check(_: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and value < minimum:
            raise SettingError(f"{attribute.name} must be at least {minimum}, got {value}")

    return check


@attrs.frozen(kw_only=True)
class CassandraSettings:
    """``cdc_total_space_mb`` is the node's ``cdc_total_space``, which ``cdc_raw`` usage
    is measured against; None means Cassandra's default, the smaller of 4096 MiB and
    an eighth of the volume holding ``cdc_raw_dir``."""

    hosts: tuple[str, ...] = ("127.0.0.1:9042",)
    cdc_raw_dir: str
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=_hidden, metadata=_HIDDEN)
    cdc_total_space_mb: int | None = attrs.field(
        default=None,
        validator=_at_least(1),
    )


def _positive(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    """Above zero; None passes, where a field allows it."""
    if value is not None and value <= 0:
        raise SettingError(f"{attribute.name} must be above 0, got {value}")


@attrs.frozen(kw_only=True)
class PostgresSettings:
    """``pool_max_size`` connections per destination at most. ``pool_idle_s``, when set,
    closes a connection idle that long and keeps none open in between; null keeps one
    open. ``connect_timeout_s`` is how long a connection may take to open, waiting
    included: a server that serves one client at a time queues the others."""

    dsn: str = attrs.field(repr=_url_repr, metadata=_URL)
    pool_max_size: int = attrs.field(default=4, validator=_at_least(1))
    pool_idle_s: float | None = attrs.field(default=None, validator=_positive)
    connect_timeout_s: float = attrs.field(default=10.0, validator=_positive)


@attrs.frozen(kw_only=True)
class ClickHouseSettings:
    url: str = attrs.field(repr=_url_repr, metadata=_URL)
    user: str = "default"
    password: str | None = attrs.field(default=None, repr=_hidden, metadata=_HIDDEN)


@attrs.frozen(kw_only=True)
class TimescaleDbSettings:
    """As :class:`PostgresSettings`, with one connection per destination by default.
    The development TimescaleDB (a WASM build) serves one connection at a time and
    queues the rest: agents sharing it set ``pool_idle_s`` (a fraction of a second) so
    each gives the connection back between batches, and a ``connect_timeout_s`` long
    enough to wait their turn."""

    dsn: str = attrs.field(repr=_url_repr, metadata=_URL)
    pool_max_size: int = attrs.field(default=1, validator=_at_least(1))
    pool_idle_s: float | None = attrs.field(default=None, validator=_positive)
    connect_timeout_s: float = attrs.field(default=10.0, validator=_positive)


DATABASES: dict[str, type[Any]] = {
    "cassandra": CassandraSettings,
    "postgres": PostgresSettings,
    "clickhouse": ClickHouseSettings,
    "timescaledb": TimescaleDbSettings,
}
"""Database sections by name; each also loads from ``CDC_<NAME>_<KEY>`` variables."""


class SnapshotMode(enum.Enum):
    """When ``cdc-app run`` snapshots the rows tables already hold (ADR 0011).

    ``never``: only ``cdc-app snapshot`` does. ``initial``: at start, every captured
    table into each destination that has not streamed yet, and any snapshot a restart
    interrupted. ``when_needed``: also, at start and while running, any (table,
    destination) without a finished snapshot: a destination added later, a table that
    gains ``cdc = true``."""

    NEVER = "never"
    INITIAL = "initial"
    WHEN_NEEDED = "when_needed"


@attrs.frozen(kw_only=True)
class MemorySource:
    """Events appended in process: nothing to read in a standalone run."""

    TYPE: ClassVar[str] = "memory"
    partition_id: str = "memory"
    snapshot: SnapshotMode = SnapshotMode.NEVER


@attrs.frozen(kw_only=True)
class CassandraSource:
    """One Cassandra node's CDC log. ``partition_id`` has no default: two nodes sharing
    one would share offsets, and each would skip what the other had read. ``snapshot``
    says when the rows tables already hold are snapshotted (see :class:`SnapshotMode`).
    ``reader_process`` reads and decodes the commit log in a child process, on another
    core, for more CPU in all (ADR 0012)."""

    TYPE: ClassVar[str] = "cassandra"
    partition_id: str
    tables: tuple[str, ...] = ()
    archive_dir: str | None = None
    schema_refresh_s: float = 60.0
    snapshot: SnapshotMode = SnapshotMode.NEVER
    reader_process: bool = False


Source = MemorySource | CassandraSource


@attrs.frozen(kw_only=True)
class JsonlDestination:
    TYPE: ClassVar[str] = "jsonl"
    name: str
    path: str


@attrs.frozen(kw_only=True)
class MemoryDestination:
    TYPE: ClassVar[str] = "memory"
    name: str


@attrs.frozen(kw_only=True)
class PostgresDestination:
    """A current-state mirror. ``schema`` and ``table`` name each Cassandra table's
    mirror (``{keyspace}`` and ``{table}`` are filled in); ``metadata_schema`` holds
    ``cdc_offsets``; ``drop_columns`` says what a dropped Cassandra column does (``keep``:
    data is never destroyed by default); ``purge_expired_after`` (seconds), when set,
    deletes rows whose data all expired (TTL) that long ago (the live view hides them
    from the moment they expire)."""

    TYPE: ClassVar[str] = "postgres"
    name: str
    schema: str = "{keyspace}"
    table: str = "{table}"
    metadata_schema: str = "public"
    drop_columns: DroppedColumns = DroppedColumns.KEEP
    purge_expired_after: int | None = attrs.field(default=None, validator=_at_least(1))


@attrs.frozen(kw_only=True)
class ClickHouseDestination:
    """``database_prefix`` is put before each keyspace's database name; ``drop_columns``
    says what a dropped Cassandra column does (``keep``: data is never destroyed by
    default); ``purge_expired_after`` (seconds, null: never) deletes rows dead (deleted
    or expired) for that long, like Cassandra's ``gc_grace_seconds``."""

    TYPE: ClassVar[str] = "clickhouse"
    name: str
    database_prefix: str = ""
    drop_columns: DroppedColumns = DroppedColumns.KEEP
    purge_expired_after: int | None = attrs.field(default=None, validator=_at_least(1))


class TimescaleMode(enum.Enum):
    HISTORY = "history"
    MIRROR = "mirror"


@attrs.frozen(kw_only=True)
class TimescaleDbDestination:
    """Change history: a hypertable per Cassandra table, one row per change
    (``mode: history``), or a mirror like PostgreSQL's (``mode: mirror``). Start-up fails
    when the ``timescaledb`` extension is missing, unless ``fallback_to_plain_tables``.
    ``purge_expired_after``: as for PostgreSQL, in mirror mode."""

    TYPE: ClassVar[str] = "timescaledb"
    name: str
    mode: TimescaleMode = TimescaleMode.HISTORY
    schema: str = "{keyspace}"
    table: str = "{table}"
    metadata_schema: str = "public"
    fallback_to_plain_tables: bool = False
    chunk_interval: str = "7 days"
    drop_columns: DroppedColumns = DroppedColumns.KEEP
    purge_expired_after: int | None = attrs.field(default=None, validator=_at_least(1))


DestinationSettings = (
    JsonlDestination
    | MemoryDestination
    | PostgresDestination
    | ClickHouseDestination
    | TimescaleDbDestination
)


@attrs.frozen(kw_only=True)
class SqliteOffsets:
    TYPE: ClassVar[str] = "sqlite"
    path: str = "./.cdc/offsets.db"


@attrs.frozen(kw_only=True)
class MemoryOffsets:
    """Offsets lost at exit: every run starts from the beginning of the source."""

    TYPE: ClassVar[str] = "memory"


@attrs.frozen(kw_only=True)
class PostgresOffsets:
    """Offsets in ``<schema>.cdc_offsets`` of the ``postgres`` database."""

    TYPE: ClassVar[str] = "postgres"
    schema: str = "public"


@attrs.frozen(kw_only=True)
class ClickHouseOffsets:
    """Offsets in ``<database>.<table>`` of the ``clickhouse`` database, for a deployment
    whose only database is ClickHouse (no local disk to keep SQLite on)."""

    TYPE: ClassVar[str] = "clickhouse"
    database: str = "cdc"
    table: str = "cdc_offsets"


Offsets = SqliteOffsets | MemoryOffsets | PostgresOffsets | ClickHouseOffsets


@attrs.frozen(kw_only=True)
class JsonlDeadLetters:
    TYPE: ClassVar[str] = "jsonl"
    path: str = "./.cdc/dead_letters.jsonl"


@attrs.frozen(kw_only=True)
class MemoryDeadLetters:
    TYPE: ClassVar[str] = "memory"


@attrs.frozen(kw_only=True)
class PostgresDeadLetters:
    """Dead letters in ``<schema>.cdc_dead_letters`` of the ``postgres`` database."""

    TYPE: ClassVar[str] = "postgres"
    schema: str = "public"


DeadLetters = JsonlDeadLetters | MemoryDeadLetters | PostgresDeadLetters


@attrs.frozen(kw_only=True)
class JsonlSchemaHistory:
    """Every schema change applied to each destination, one JSON object per line."""

    TYPE: ClassVar[str] = "jsonl"
    path: str = "./.cdc/schema_history.jsonl"


@attrs.frozen(kw_only=True)
class MemorySchemaHistory:
    """Forgotten at exit: every run re-applies each table's schema once, idempotently."""

    TYPE: ClassVar[str] = "memory"


SchemaHistory = JsonlSchemaHistory | MemorySchemaHistory

TAGGED: dict[str, tuple[type[Any], ...]] = {
    "source": (MemorySource, CassandraSource),
    "destination": (
        JsonlDestination,
        MemoryDestination,
        PostgresDestination,
        ClickHouseDestination,
        TimescaleDbDestination,
    ),
    "offsets": (SqliteOffsets, MemoryOffsets, PostgresOffsets, ClickHouseOffsets),
    "dead letter": (JsonlDeadLetters, MemoryDeadLetters, PostgresDeadLetters),
    "schema history": (JsonlSchemaHistory, MemorySchemaHistory),
}
"""The members of each union by label, as its ``type`` error names them."""


@attrs.frozen(kw_only=True)
class MaskingSettings:
    """``rules_file`` adds rules to the built-in PII/PHI ones; ``hmac_key`` is needed
    as soon as a rule hashes (an empty key counts as none)."""

    rules_file: str | None = None
    hmac_key: str | None = attrs.field(default=None, repr=_hidden, metadata=_HIDDEN)


@attrs.frozen(kw_only=True)
class PipelineSettings:
    """``max_batch_delay_ms`` is how long a destination that found less than a full
    batch waits before reading again, so it bounds a trickle's latency. A destination
    whose batch fails for a transient reason retries from its own offset after
    ``retry_initial_ms``, doubling (with jitter) up to ``retry_max_ms``; one that fails
    for a permanent reason stops and tries again after ``permanent_retry_s`` (null: only
    at the next start); so does a single table whose DDL or writes a destination
    refuses, paused there while the others flow. ``shutdown_timeout_s`` bounds how long
    a stop waits for in-flight batches. ``unknown_tables`` says what becomes of commit
    log entries of tables the schema does not know (dropped before the agent started):
    ``count`` keeps the first ``unknown_tables_kept`` of each table in full and counts
    the rest, ``dead_letter`` keeps every one, ``skip`` none."""

    max_batch_events: int = attrs.field(default=1000, validator=_at_least(1))
    max_batch_delay_ms: int = attrs.field(default=200, validator=_at_least(0))
    retry_initial_ms: int = attrs.field(default=500, validator=_at_least(1))
    retry_max_ms: int = attrs.field(default=30_000, validator=_at_least(1))
    permanent_retry_s: int | None = attrs.field(default=600, validator=_at_least(1))
    acknowledge_interval_ms: int = attrs.field(default=1000, validator=_at_least(1))
    shutdown_timeout_s: int = attrs.field(default=30, validator=_at_least(1))
    unknown_tables: UnknownTablePolicy = UnknownTablePolicy.COUNT
    unknown_tables_kept: int = attrs.field(default=10, validator=_at_least(0))


class ReadConsistency(enum.Enum):
    """The consistency levels a snapshot may read at."""

    ONE = "ONE"
    TWO = "TWO"
    THREE = "THREE"
    QUORUM = "QUORUM"
    ALL = "ALL"
    LOCAL_QUORUM = "LOCAL_QUORUM"
    LOCAL_ONE = "LOCAL_ONE"


@attrs.frozen(kw_only=True)
class SnapshotSettings:
    """How snapshots read (``cdc-app snapshot``, and ``source.snapshot`` in ``run``).

    Tables are read by token range at ``consistency``, ``concurrency`` ranges at a
    time, ``page_rows`` rows per request; the ring is split into ranges of about
    ``range_partitions`` partitions (by the node's estimate), at least ``min_ranges``
    and four per concurrent read (after a crash only unfinished ranges are read again:
    the smaller, the less). A range failing is read again up to ``range_attempts`` times,
    pausing ``retry_initial_ms`` doubling to ``retry_max_ms``, then dead-lettered with
    its bounds. An agent reads the ranges its node is the primary replica of, or every
    range with ``all_ranges`` (one agent for the whole cluster). ``check_interval_s``
    is how often ``when_needed`` looks for tables to snapshot while running;
    ``progress_interval_s`` how often a running snapshot logs its progress."""

    consistency: ReadConsistency = ReadConsistency.LOCAL_QUORUM
    concurrency: int = attrs.field(default=4, validator=_at_least(1))
    page_rows: int = attrs.field(default=1000, validator=_at_least(1))
    range_partitions: int = attrs.field(default=50_000, validator=_at_least(1))
    min_ranges: int = attrs.field(default=16, validator=_at_least(1))
    range_attempts: int = attrs.field(default=5, validator=_at_least(1))
    retry_initial_ms: int = attrs.field(default=1000, validator=_at_least(1))
    retry_max_ms: int = attrs.field(default=30_000, validator=_at_least(1))
    all_ranges: bool = False
    check_interval_s: int = attrs.field(default=60, validator=_at_least(1))
    progress_interval_s: int = attrs.field(default=10, validator=_at_least(1))


def _ratio(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 < value <= 1:
        raise SettingError(f"{attribute.name} must be above 0 and at most 1, got {value}")


def _port(_: object, attribute: attrs.Attribute[int], value: int | None) -> None:
    if value is not None and not 0 <= value <= 65535:
        raise SettingError(f"{attribute.name} must be a TCP port (0-65535), got {value}")


@attrs.frozen(kw_only=True)
class HealthSettings:
    """The health and metrics endpoint; a null ``port`` turns it off, 0 picks a free
    one. It listens on loopback unless told otherwise: it is unauthenticated.
    ``cdc_raw_warn_ratio`` is the share of ``cdc_total_space`` above which health is
    degraded, well before a full ``cdc_raw`` makes Cassandra reject writes."""

    host: str = "127.0.0.1"
    port: int | None = attrs.field(default=8080, validator=_port)
    cdc_raw_warn_ratio: float = attrs.field(default=0.8, validator=_ratio)


class LogFormat(enum.Enum):
    CONSOLE = "console"
    JSON = "json"


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@attrs.frozen(kw_only=True)
class LoggingSettings:
    format: LogFormat = LogFormat.CONSOLE
    level: LogLevel = LogLevel.INFO


@attrs.frozen(kw_only=True)
class Settings:
    source: Source
    destinations: tuple[DestinationSettings, ...]
    offsets: Offsets = SqliteOffsets()
    dead_letters: DeadLetters = JsonlDeadLetters()
    schema_history: SchemaHistory = JsonlSchemaHistory()
    masking: MaskingSettings = MaskingSettings()
    pipeline: PipelineSettings = PipelineSettings()
    snapshot: SnapshotSettings = SnapshotSettings()
    health: HealthSettings = HealthSettings()
    logging: LoggingSettings = LoggingSettings()
    cassandra: CassandraSettings | None = None
    postgres: PostgresSettings | None = None
    clickhouse: ClickHouseSettings | None = None
    timescaledb: TimescaleDbSettings | None = None
