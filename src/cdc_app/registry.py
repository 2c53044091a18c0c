"""Which adapter class implements each configured ``type``, imported only when used.

Adapters are named, not imported, so a build without a database's extra still runs
with the others, and says what to install when that database is asked for. A type the
settings accept but no line here names is one whose adapter has not shipped yet.

An adapter joins with one line, and its constructor takes keyword arguments: the keys
of its configuration entry (``name`` included for a sink), ``clock`` for an offset
store, and the keys of the database section its type names (``dsn``, ``hosts``...).
A schema source takes only the database keys of its source's type.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from cdc_app.settings import Settings

__all__ = [
    "CHANGE_SOURCES",
    "DEAD_LETTER_QUEUES",
    "OFFSET_STORES",
    "SCHEMA_HISTORIES",
    "SCHEMA_SOURCES",
    "SINKS",
    "AdapterRef",
    "AdapterUnavailableError",
    "adapter_class",
    "adapters_in_use",
]

_DISTRIBUTION = "cassandra-cdc"


class AdapterUnavailableError(LookupError):
    """A configured adapter this installation cannot provide."""


@attrs.frozen
class AdapterRef:
    """``target`` is ``"module:Class"``; ``extra`` the pip extra holding its driver."""

    target: str
    extra: str | None = None

    def load(self, adapter_type: str) -> type[Any]:
        module_name, _, class_name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or module_name
            if self.extra is None or f"{module_name}.".startswith(f"{missing}."):
                raise AdapterUnavailableError(
                    f"{adapter_type} is not available in this build ({exc})"
                ) from exc
            raise AdapterUnavailableError(
                f"{adapter_type} needs the '{self.extra}' extra: "
                f"pip install '{_DISTRIBUTION}[{self.extra}]'"
            ) from exc
        cls: type[Any] = getattr(module, class_name)
        return cls


CHANGE_SOURCES = MappingProxyType(
    {
        "memory": AdapterRef("cdc_adapters.memory:MemoryChangeSource"),
        "cassandra": AdapterRef("cdc_adapters.cassandra:CassandraChangeSource", "cassandra"),
    }
)
SCHEMA_SOURCES = MappingProxyType(
    {
        "memory": AdapterRef("cdc_adapters.memory:MemorySchemaSource"),
        "cassandra": AdapterRef("cdc_adapters.cassandra:CassandraSchemaSource", "cassandra"),
    }
)
SINKS = MappingProxyType(
    {
        "jsonl": AdapterRef("cdc_adapters.local:JsonLinesSink"),
        "memory": AdapterRef("cdc_adapters.memory:MemorySink"),
        "clickhouse": AdapterRef("cdc_adapters.clickhouse:ClickHouseSink", "clickhouse"),
        "postgres": AdapterRef("cdc_adapters.postgres:PostgresSink", "postgres"),
        "timescaledb": AdapterRef("cdc_adapters.timescaledb:timescale_sink", "postgres"),
    }
)
OFFSET_STORES = MappingProxyType(
    {
        "sqlite": AdapterRef("cdc_adapters.local:SqliteOffsetStore"),
        "memory": AdapterRef("cdc_adapters.memory:MemoryOffsetStore"),
        "postgres": AdapterRef("cdc_adapters.postgres:PostgresOffsetStore", "postgres"),
    }
)
DEAD_LETTER_QUEUES = MappingProxyType(
    {
        "jsonl": AdapterRef("cdc_adapters.local:JsonLinesDeadLetterQueue"),
        "memory": AdapterRef("cdc_adapters.memory:MemoryDeadLetterQueue"),
        "postgres": AdapterRef("cdc_adapters.postgres:PostgresDeadLetterQueue", "postgres"),
    }
)

SCHEMA_HISTORIES = MappingProxyType(
    {
        "jsonl": AdapterRef("cdc_adapters.local:JsonLinesSchemaHistory"),
        "memory": AdapterRef("cdc_adapters.memory:MemorySchemaHistory"),
    }
)


def adapter_class(table: Mapping[str, AdapterRef], adapter_type: str) -> type[Any]:
    ref = table.get(adapter_type)
    if ref is None:
        raise AdapterUnavailableError(f"{adapter_type} is not available in this build yet")
    return ref.load(adapter_type)


def adapters_in_use(settings: Settings) -> Iterator[tuple[str, Mapping[str, AdapterRef], str]]:
    """Every adapter ``settings`` asks for, as (config path of its type, table, type)."""
    yield "source.type", CHANGE_SOURCES, settings.source.TYPE
    yield "source.type", SCHEMA_SOURCES, settings.source.TYPE
    for index, destination in enumerate(settings.destinations):
        yield f"destinations[{index}].type", SINKS, destination.TYPE
    yield "offsets.type", OFFSET_STORES, settings.offsets.TYPE
    yield "dead_letters.type", DEAD_LETTER_QUEUES, settings.dead_letters.TYPE
    yield "schema_history.type", SCHEMA_HISTORIES, settings.schema_history.TYPE
