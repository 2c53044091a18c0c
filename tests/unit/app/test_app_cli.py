"""The installed ``cdc-app`` command, run as a user runs it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def jsonl_config(tmp_path: Path) -> str:
    return f"""
        source: {{type: memory}}
        destinations:
          - {{name: audit, type: jsonl, path: {tmp_path / "changes.jsonl"}}}
        offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
        dead_letters: {{type: jsonl, path: {tmp_path / "dead.jsonl"}}}
        pipeline: {{max_batch_delay_ms: 50}}
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
            "config error: destinations[0].type: clickhouse is not available in this build yet",
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
    path = write_config(jsonl_config(tmp_path))
    process = subprocess.Popen(
        [CDC_APP, "run", "--config", str(path)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert json.loads(process.stderr.readline())["event"] == "started"
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
        events = [json.loads(line)["event"] for line in process.stderr.read().splitlines()]
        assert events == ["stopping after the current batch", "stopped"]
    finally:
        process.kill()
        process.communicate()
