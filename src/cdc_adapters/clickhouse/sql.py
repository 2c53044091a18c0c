"""Identifiers and literals in ClickHouse SQL text, always escaped.

Table and column names come from Cassandra and from users' configuration, so every
identifier is backtick-quoted with backslash escapes. Values never reach SQL text except
as escaped string literals in key look-ups (Debian's 18.16 has no query parameters).
"""

from __future__ import annotations

__all__ = ["qualified", "quote_identifier", "quote_string"]


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + "'"


def qualified(database: str, table: str) -> str:
    return f"{quote_identifier(database)}.{quote_identifier(table)}"
