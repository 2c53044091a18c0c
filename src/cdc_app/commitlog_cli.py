"""``cdc-app commitlog decode`` and ``cdc-app schema export``: the commit log reader as a
support tool, with no configuration file.

``commitlog decode FILE...`` prints one JSON object per change event (JSON Lines) on
stdout, and one per entry it could not decode on stderr (with its segment id and offset).
Each file is read up to the offset in its ``_cdc.idx`` when one lies next to it, else to
the end of what was written. Exit status: 0 when every entry decoded, 1 when some did not
(the events of the others are still printed: the status is for scripts), 2 for a usage,
schema or connection problem.

``schema export --from HOST[:PORT]`` writes the schema file ``--schema`` reads. System
keyspaces are always included: a segment holds their mutations too, and a reader needs
their columns to step over them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from cdc_domain.dead_letters import DeadLetterEvent
from cdc_domain.errors import TransientError
from cdc_domain.events import ChangeEvent
from cdc_domain.schema import TableSchema
from cdc_domain.serialization import make_converter

__all__ = ["add_commitlog_commands", "decode_command", "export_command"]

_OK, _FAILED, _USAGE = 0, 1, 2
_PASSWORD_VARIABLE = "CDC_CASSANDRA_PASSWORD"
_EVENT_FIELDS = (
    "keyspace",
    "table",
    "partition_key",
    "clustering_key",
    "columns",
    "deleted_columns",
    "collections",
    "counters",
    "counter_totals",
    "scope",
    "clustering_range",
    "static",
    "timestamp_micros",
    "ttl_seconds",
)


def add_commitlog_commands(subparsers: Any, schema_commands: Any) -> None:
    """Add ``commitlog decode`` to the ``cdc-app`` subparsers and ``export`` to the
    ``schema`` command's.

    Each parser sets ``command`` and ``handler``; ``handler(args)`` returns the exit code.
    """
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--username", help=f"CQL user; the password is read from ${_PASSWORD_VARIABLE}"
    )

    commitlog = subparsers.add_parser("commitlog", help="read commit log segments")
    commitlog_commands = commitlog.add_subparsers(title="commitlog commands", required=True)
    decode = commitlog_commands.add_parser(
        "decode",
        parents=[connection],
        help="print the change events of segment files as JSON Lines",
    )
    decode.add_argument("files", nargs="+", type=Path, metavar="FILE", help="segment files")
    schemas = decode.add_mutually_exclusive_group(required=True)
    schemas.add_argument("--schema-from", metavar="HOST[:PORT]", help="read schemas from a node")
    schemas.add_argument(
        "--schema", type=Path, metavar="FILE", help="read schemas from a `schema export` file"
    )
    decode.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only tables named ks.table or matching ks.* (repeatable); default every CDC table",
    )
    decode.set_defaults(command="commitlog decode", handler=decode_command)

    export = schema_commands.add_parser(
        "export", parents=[connection], help="write a node's table schemas as JSON to stdout"
    )
    export.add_argument("--from", dest="host", required=True, metavar="HOST[:PORT]")
    export.add_argument(
        "--keyspace",
        action="append",
        default=[],
        metavar="K",
        help="only this user keyspace (repeatable); system keyspaces are always included",
    )
    export.set_defaults(command="schema export", handler=export_command)


def _node_schemas(
    host: str, username: str | None, keyspaces: list[str] | None
) -> list[TableSchema]:
    from cdc_adapters.cassandra.driver import CassandraConnection
    from cdc_adapters.cassandra.schema_catalog import SYSTEM_KEYSPACES

    connection = CassandraConnection(
        [host], username=username, password=os.environ.get(_PASSWORD_VARIABLE)
    )
    try:
        wanted = None if not keyspaces else sorted({*keyspaces, *SYSTEM_KEYSPACES})
        return connection.load_schemas(wanted)
    finally:
        connection.close()


def export_command(
    args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    from cdc_adapters.cassandra.schema_file import dump_schemas

    try:
        schemas = _node_schemas(args.host, args.username, args.keyspace)
    except (TransientError, ValueError) as exc:
        print(f"schema export: {exc}", file=err)
        return _USAGE
    out.write(dump_schemas(schemas))
    return _OK


def decode_command(
    args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    from cdc_adapters.cassandra.cdc_directory import idx_path
    from cdc_adapters.cassandra.entry_decoder import EntryDecoder, TableFilter, failure_for
    from cdc_adapters.cassandra.schema_catalog import SchemaCatalog
    from cdc_adapters.cassandra.schema_file import SchemaFileError, load_schemas
    from cdc_adapters.cassandra.segment import (
        CommitLogError,
        parse_segment_name,
        read_cdc_index,
        read_segment_file,
    )

    try:
        if args.schema is not None:
            schemas = load_schemas(args.schema.read_text(encoding="utf-8"))
        else:
            schemas = _node_schemas(args.schema_from, args.username, None)
    except (OSError, SchemaFileError, TransientError, ValueError) as exc:
        print(f"commitlog decode: cannot load schemas: {exc}", file=err)
        return _USAGE
    decoder = EntryDecoder(SchemaCatalog(schemas=schemas), tables=TableFilter(args.table))
    converter = make_converter()
    captured_at = dt.datetime.now(dt.UTC)
    status = _OK
    for path in args.files:
        parsed = parse_segment_name(path.name)
        segment_id = parsed[1] if parsed else -1
        index = read_cdc_index(idx_path(path))
        try:
            items = read_segment_file(path, limit=index.offset if index else None)
            for item in items:
                if isinstance(item, CommitLogError):
                    _error(err, failure_for(item, segment_id, captured_at))
                    status = _FAILED
                    continue
                decoded = decoder.decode(item, captured_at)
                if decoded.failure is not None:
                    _error(err, decoded.failure)
                    status = _FAILED
                for event in decoded.events:
                    out.write(json.dumps(_event_json(converter, event), ensure_ascii=False) + "\n")
        except (CommitLogError, OSError) as exc:
            print(
                json.dumps(
                    {"file": str(path), "segment_id": segment_id, "offset": 0, "error": str(exc)}
                ),
                file=err,
            )
            status = _FAILED
    return status


def _event_json(converter: Any, event: ChangeEvent) -> dict[str, Any]:
    data = converter.unstructure(event)
    result = {"op": data["operation"]}
    result.update({name: data[name] for name in _EVENT_FIELDS})
    result["position"] = {
        "segment_id": event.position.segment_id,
        "offset": event.position.offset,
        "index": event.position.index,
    }
    return result


def _error(err: TextIO, failure: DeadLetterEvent) -> None:
    assert failure.position is not None
    details = failure.schema_details
    record = {
        "error": failure.reason.value,
        "segment_id": failure.position.segment_id,
        "offset": failure.position.offset,
        "message": failure.error,
        "raw_bytes": len(failure.raw or b""),
        **{k: v for k, v in details.items() if k not in ("segment_id", "offset")},
    }
    print(json.dumps(record, ensure_ascii=False), file=err)
