"""``cdc-app commitlog decode`` over the committed fixture segment, and its schema file."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import pytest

from cdc_adapters.cassandra.schema_file import dump_schemas, load_schemas
from cdc_app.commitlog_cli import add_commitlog_commands
from tests.unit.cassandra.cassandra_recordings import load_recorded

FIELDS = {
    "op",
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
    "position",
}


def _run(*argv: str) -> tuple[int, list[dict], list[dict]]:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    schema_commands = commands.add_parser("schema").add_subparsers()
    add_commitlog_commands(commands, schema_commands)
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code = args.handler(args, out, err)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    errors = [json.loads(line) for line in err.getvalue().splitlines() if line.startswith("{")]
    return code, lines, errors


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "schema.json"
    path.write_text(dump_schemas(load_recorded("v7_basic").schemas.values()))
    return path


def test_decode_prints_one_json_line_per_event(schema_file: Path) -> None:
    recorded = load_recorded("v7_basic")
    code, events, errors = _run(
        "commitlog", "decode", str(recorded.path), "--schema", str(schema_file)
    )
    assert (code, errors) == (0, [])
    assert all(set(e) == FIELDS for e in events)
    first = next(e for e in events if e["table"] == "all_types")
    assert first["op"] == "INSERT"
    assert first["partition_key"] == {"id": 1}
    assert first["columns"]["a_varint"] == {"$varint": "123456789012345678901234567890"}
    assert first["columns"]["a_blob"] == {"$blob": "yv4="}
    assert first["position"]["segment_id"] == recorded.segment_id
    positions = [tuple(e["position"].values()) for e in events]
    assert positions == sorted(positions)
    assert {e["table"] for e in events} >= {"all_types", "rows", "counts"}
    assert "plain" not in {e["table"] for e in events}  # not a CDC table


def test_decode_errors_go_to_stderr_with_their_position(schema_file: Path, tmp_path: Path) -> None:
    recorded = load_recorded("v7_basic")
    data = bytearray(recorded.data)
    data[200] ^= 0xFF
    damaged = tmp_path / recorded.path.name
    damaged.write_bytes(bytes(data))
    shutil.copy(recorded.path.with_name(recorded.path.stem + "_cdc.idx"), tmp_path)
    code, events, errors = _run("commitlog", "decode", str(damaged), "--schema", str(schema_file))
    assert code == 1
    assert errors
    assert all(e["segment_id"] == recorded.segment_id for e in errors)
    assert all(e["error"] == "DECODE_ERROR" and e["offset"] > 0 for e in errors)
    assert events  # the entries after the damage still decode


def test_decode_with_tables_narrowed(schema_file: Path) -> None:
    recorded = load_recorded("v7_basic")
    code, events, _ = _run(
        "commitlog", "decode", str(recorded.path), "--schema", str(schema_file),
        "--table", "fx_v7_basic.counts",
    )  # fmt: skip
    assert code == 0
    assert {e["table"] for e in events} == {"counts"}
    assert [e["counters"] for e in events] == [{"n": 5}, {"n": 3}]


def test_an_unreadable_schema_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "schema.json"
    bad.write_text("{}")
    code, events, _ = _run("commitlog", "decode", str(bad), "--schema", str(bad))
    assert (code, events) == (2, [])


def test_schema_file_round_trip() -> None:
    schemas = list(load_recorded("v7_basic").schemas.values())
    assert sorted(load_schemas(dump_schemas(schemas)), key=lambda s: s.table) == sorted(
        schemas, key=lambda s: s.table
    )


def test_subcommands_need_a_schema_source() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    schema_commands = commands.add_parser("schema").add_subparsers()
    add_commitlog_commands(commands, schema_commands)
    with pytest.raises(SystemExit):
        parser.parse_args(["commitlog", "decode", "x.log"])
    args = parser.parse_args(["schema", "export", "--from", "h:9042", "--keyspace", "k"])
    assert (args.command, args.host, args.keyspace) == ("schema export", "h:9042", ["k"])
