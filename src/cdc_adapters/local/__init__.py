"""Adapters that need no server: JSON Lines files, SQLite and the system clock, so the
default configuration runs anywhere."""

from cdc_adapters.local.clock import SystemClock
from cdc_adapters.local.jsonl_dead_letters import JsonLinesDeadLetterQueue
from cdc_adapters.local.jsonl_schema_history import JsonLinesSchemaHistory
from cdc_adapters.local.jsonl_sink import JsonLinesSink
from cdc_adapters.local.sqlite_offsets import SqliteOffsetStore

__all__ = [
    "JsonLinesDeadLetterQueue",
    "JsonLinesSchemaHistory",
    "JsonLinesSink",
    "SqliteOffsetStore",
    "SystemClock",
]
