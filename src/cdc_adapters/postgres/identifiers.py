"""Quoting of SQL identifiers: every table, column and type name goes through here.

Names come from Cassandra and from a user's configuration, so none is ever trusted to
be a plain word. PostgreSQL truncates identifiers to 63 bytes; the names this adapter
derives (``_cdc_ts_<column>``...) are shortened with a hash instead, so two long
columns never collide on one truncated name.
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_IDENTIFIER_BYTES", "derived_name", "qualified", "quote"]

MAX_IDENTIFIER_BYTES = 63


def quote(name: str) -> str:
    """``name`` as a quoted identifier; a NUL cannot be quoted and is refused."""
    if "\x00" in name:
        raise ValueError(f"identifier {name!r} contains a NUL character")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"identifier {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote(schema)}.{quote(name)}"


def derived_name(prefix: str, name: str, suffix: str = "") -> str:
    """``prefix + name + suffix``, or a hashed short form when that exceeds 63 bytes."""
    full = f"{prefix}{name}{suffix}"
    if len(full.encode()) <= MAX_IDENTIFIER_BYTES:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    room = MAX_IDENTIFIER_BYTES - len(prefix.encode()) - len(suffix.encode()) - 11
    head = name.encode()[:room].decode(errors="ignore")
    return f"{prefix}{head}_{digest}{suffix}"
