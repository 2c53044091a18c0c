"""The installed ``cdc-app`` command, run as a user runs it."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cdc_adapters.local import JsonLinesDeadLetterQueue
from cdc_adapters.memory import ManualClock
from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from tests.factories import event
from tests.unit.app.wiring import free_port

CDC_APP = str(Path(sys.executable).parent / "cdc-app")


def cdc_app(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CDC_APP, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def jsonl_config(tmp_path: Path, *, port: int | None = None, extra: str = "") -> str:
    return f"""
        source: {{type: memory}}
        destinations:
          - {{name: audit, type: jsonl, path: {tmp_path / "changes.jsonl"}}}{extra}
        offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
        dead_letters: {{type: jsonl, path: {tmp_path / "dead.jsonl"}}}
        schema_history: {{type: jsonl, path: {tmp_path / "schemas.jsonl"}}}
        pipeline: {{max_batch_delay_ms: 50}}
        health: {{port: {"null" if port is None else port}}}
        logging: {{format: json}}
        """


def test_help_lists_the_commands():
    result = cdc_app("--help")

    assert result.returncode == 0
    assert "config" in result.stdout
    assert "run" in result.stdout


def test_version_comes_from_the_distribution():
    result = cdc_app("--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"cdc-app {importlib.metadata.version('cassandra-cdc')}"


def test_config_check_prints_the_resolved_configuration_with_secrets_masked(write_config):
    path = write_config(
        """
        source: {type: memory}
        destinations: [{name: mirror, type: memory}]
        masking: {hmac_key: "${HMAC_KEY}"}
        """
    )

    result = cdc_app(
        "config",
        "check",
        path,
        env={"HMAC_KEY": "hmac-secret", "CDC_POSTGRES_DSN": "postgresql://u:pg-pw@h/db"},
    )

    assert result.returncode == 0, result.stderr
    assert "hmac-secret" not in result.stdout
    assert "pg-pw" not in result.stdout
    printed = yaml.safe_load(result.stdout)
    assert printed["masking"]["hmac_key"] == "********"
    assert printed["postgres"]["dsn"] == "postgresql://u:********@h/db"
    assert printed["offsets"] == {"type": "sqlite", "path": "./.cdc/offsets.db"}


def test_the_example_configuration_is_valid():
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [CDC_APP, "config", "check", "config/example.yaml"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "source: {type: memory}\ndestinations: [{name: a, type: postgress}]\n",
            "config error: destinations[0].type: unknown destination type 'postgress' (expected",
        ),
        (
            "source: {type: memory}\ndestinations: [{name: a, type: clickhouse}]\n",
            "config error: destinations[0].type: clickhouse needs the 'clickhouse' section",
        ),
        (
            "source: {type: memory}\ndestinations: [{name: a, type: memory}]\npipelne: {}\n",
            "config error: unknown key 'pipelne'",
        ),
        (
            "source: {type: memory}\ndestinations: [{name: a, type: memory}]\n"
            "pipeline: {max_batch_events: many}\n",
            "config error: pipeline.max_batch_events: expected an integer",
        ),
        ("source: {type: memory\n", "config error: {path} line 2: "),
    ],
)
@pytest.mark.parametrize("command", [("config", "check"), ("run", "--config")])
def test_a_broken_file_is_one_line_and_exit_2(write_config, text, expected, command):
    path = write_config(text)

    result = cdc_app(*command, path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(expected.format(path=path))
    assert "Traceback" not in result.stderr


def test_a_missing_file_is_one_line_and_exit_2(tmp_path):
    result = cdc_app("config", "check", tmp_path / "absent.yaml")

    assert result.returncode == 2
    assert result.stderr == f"config error: {tmp_path / 'absent.yaml'}: no such file\n"


def test_run_once_with_nothing_to_read_exits_0(write_config, tmp_path):
    path = write_config(jsonl_config(tmp_path))

    result = cdc_app("run", "--config", path, "--once")

    assert result.returncode == 0, result.stderr
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert events == ["started", "stopped"]
    assert (tmp_path / "offsets.db").exists()
    assert not (tmp_path / "changes.jsonl").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_running_pipeline_with_exit_0(write_config, tmp_path, signum):
    port = free_port()
    path = write_config(jsonl_config(tmp_path, port=port))
    process = subprocess.Popen(
        [CDC_APP, "run", "--config", str(path)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        listening = json.loads(process.stderr.readline())
        assert (listening["event"], listening["url"]) == (
            "endpoint listening",
            f"http://127.0.0.1:{port}",
        )
        assert json.loads(process.stderr.readline())["event"] == "started"
        health = cdc_app("health", "--config", path)
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
        events = [json.loads(line)["event"] for line in process.stderr.read().splitlines()]
        assert events == ["stopping after the batches in flight", "stopped"]
    finally:
        process.kill()
        process.communicate()
    assert health.returncode == 0, health.stdout
    assert health.stdout.endswith("status: up (reported by the running pipeline)\n")


def test_health_exits_0_up_1_degraded_2_down(write_config, tmp_path):
    unwritable = tmp_path / "missing" / "changes.jsonl"
    up = write_config(jsonl_config(tmp_path), "up.yaml")
    degraded = write_config(
        jsonl_config(
            tmp_path, extra=f"\n          - {{name: lost, type: jsonl, path: {unwritable}}}"
        ),
        "degraded.yaml",
    )
    down = write_config(
        jsonl_config(tmp_path).replace(str(tmp_path / "changes.jsonl"), str(unwritable)),
        "down.yaml",
    )

    results = [cdc_app("health", "--config", path) for path in (up, degraded, down)]

    assert [r.returncode for r in results] == [0, 1, 2], [r.stderr for r in results]
    assert "destination  lost   down" in results[1].stdout
    assert f"{unwritable.parent} is not writable" in results[1].stdout
    assert results[2].stdout.endswith(
        "status: down (checked by this command: no pipeline answered)\n"
    )


def write_dead_letters(tmp_path: Path) -> list[DeadLetterEvent]:
    entries = [
        DeadLetterEvent.for_event(
            event(table="customers", key=key, columns={"name": "n"}),
            reason=reason,
            error=f"{reason.value}: column name",
            failed_at=ManualClock().now(),
            destination="audit",
        )
        for key, reason in ((1, FailureReason.VALIDATION_ERROR), (2, FailureReason.UNKNOWN_TABLE))
    ]
    asyncio.run(JsonLinesDeadLetterQueue(str(tmp_path / "dead.jsonl")).write(entries))
    return entries


def test_dlq_list_and_show(write_config, tmp_path):
    path = write_config(jsonl_config(tmp_path))
    validation, unknown = write_dead_letters(tmp_path)

    listed = cdc_app("dlq", "list", "--config", path)
    filtered = cdc_app("dlq", "list", "--config", path, "--reason", "UNKNOWN_TABLE")
    shown = cdc_app("dlq", "show", "--config", path, validation.dlq_id[:8])
    missing = cdc_app("dlq", "show", "--config", path, "nope")

    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["ID", "FAILED", "AT"]
    assert [row.split()[0] for row in rows] == [validation.dlq_id, unknown.dlq_id]
    assert [row.split()[0] for row in filtered.stdout.splitlines()[1:]] == [unknown.dlq_id]
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert (document["dlq_id"], document["reason"]) == (validation.dlq_id, "VALIDATION_ERROR")
    assert document["event"]["partition_key"] == {"id": 1}
    assert (missing.returncode, missing.stderr) == (1, "no dead letter 'nope'\n")


def test_dlq_replay_keeps_what_fails_again_pending(write_config, tmp_path):
    # The memory source knows no schema, so nothing can be replayed from this process.
    path = write_config(jsonl_config(tmp_path))
    validation, _ = write_dead_letters(tmp_path)

    replayed = cdc_app("dlq", "replay", "--config", path, "--reason", "VALIDATION_ERROR")
    listed = cdc_app("dlq", "list", "--config", path)

    assert replayed.returncode == 1, replayed.stderr
    assert replayed.stdout.splitlines() == [
        "replayed 0, failed again 1, skipped 0",
        f"failed again  {validation.dlq_id}  no schema is known for shop.customers",
    ]
    row = next(r.split() for r in listed.stdout.splitlines() if r.startswith(validation.dlq_id))
    assert row[row.index("PENDING") - 1] == "1"  # its retry count


def test_status_without_a_running_pipeline(write_config, tmp_path):
    path = write_config(jsonl_config(tmp_path))
    write_dead_letters(tmp_path)

    result = cdc_app("status", "--config", path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split() == [
        "audit",
        "memory",
        "not",
        "started",
        "-",
        "0",
        "2",
    ]
