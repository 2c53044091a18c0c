"""``cdc-app clickhouse migrate``: convert tables of a ClickHouse destination from the
layout of ADR 0006 (a ReplacingMergeTree per table with ``_cdc_state``) to the current
one (ADR 0010).

The sink refuses to write a table still in the old layout (its events go to the dead
letter queue and the table pauses, naming this command), so an upgrade is: run this
command once per ClickHouse destination, then replay the dead letters, if any
(``cdc-app dlq replay``). Agents may keep running meanwhile: the conversion writes its
events into the new layout, which merges them with theirs in any order. Exit status: 0
done (also when nothing needed converting), 1 a table failed (the others are done; run
again), 2 no such ClickHouse destination, or an unknown table.
"""

from __future__ import annotations

import argparse
from typing import IO, Any

from cdc_app.container import Container, opened
from cdc_domain.errors import CdcError, describe_error

__all__ = ["add_clickhouse_commands", "migrate"]


def add_clickhouse_commands(subparsers: Any, configured: argparse.ArgumentParser) -> None:
    """Add ``clickhouse migrate`` to the ``cdc-app`` subparsers."""
    clickhouse = subparsers.add_parser("clickhouse", help="work with ClickHouse destinations")
    commands = clickhouse.add_subparsers(title="clickhouse commands", required=True)
    migrate_ = commands.add_parser(
        "migrate",
        parents=[configured],
        help="convert tables written in the layout of ADR 0006 to the current one (ADR 0010)",
    )
    migrate_.add_argument("--destination", required=True, help="the ClickHouse destination")
    migrate_.add_argument(
        "--table", action="append", default=[], help="keyspace.table (repeatable); default: all"
    )
    migrate_.set_defaults(command="clickhouse migrate")


async def migrate(
    container: Container, out: IO[str], err: IO[str], *, destination: str, tables: list[str]
) -> int:
    """Convert each table (every table the schema source knows when none is named)."""
    from cdc_adapters.clickhouse import ClickHouseSink

    async with opened(container) as adapters:
        sink = next((s for s in await adapters.sinks() if s.name == destination), None)
        if not isinstance(sink, ClickHouseSink):
            err.write(f"no ClickHouse destination named {destination!r} is configured\n")
            return 2
        known = await (await adapters.schemas()).tables()
        wanted = [tuple(t.split(".", 1)) for t in tables] if tables else sorted(known)
        unknown = [".".join(t) for t in wanted if t not in known]
        if unknown:
            err.write(f"not known to the schema source: {', '.join(unknown)}\n")
            return 2
        failed = False
        for key in wanted:
            schema = known[key]  # type: ignore[index]
            try:
                converted = await sink.migrate(schema)
            except CdcError as exc:
                err.write(f"{schema.qualified_name}: failed: {describe_error(exc)}\n")
                failed = True
                continue
            if converted is not None:
                out.write(f"{schema.qualified_name}: converted {converted} states\n")
    return 1 if failed else 0
