"""The health endpoint of a running pipeline, and ``cdc-app health``, with one database
configured (only it is checked) and with one of two destinations down (degraded, and
the other keeps being reported up)."""

from __future__ import annotations

from typing import Any

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import Pipeline, free_port, run_cli, write_config


def _settings(
    stack: Stack, port: int, destinations: list[dict[str, Any]], **databases: Any
) -> dict:
    return {
        "source": {"type": "memory"},
        **databases,
        "destinations": destinations,
        "offsets": {"type": "memory"},
        "dead_letters": {"type": "memory"},
        "schema_history": {"type": "memory"},
        "health": {"port": port},
        "logging": {"format": "json"},
    }


def _checks(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c["kind"], c["name"]): c["status"] for c in report["checks"]}


async def test_only_the_configured_database_is_checked(stack: Stack) -> None:
    port = free_port()
    config = write_config(
        stack.workdir / "health_one.yaml",
        _settings(stack, port, [{"name": "pg", "type": "postgres"}],
                  postgres={"dsn": stack.postgres_dsn}),
    )  # fmt: skip
    pipeline = Pipeline(config, port, stack.workdir / "health_one.log")
    stack.pipelines.append(pipeline)
    pipeline.start()
    report = pipeline.get("/health")
    assert report["status"] == "up", report
    assert _checks(report) == {("destination", "pg"): "up", ("replication", "pg"): "up"}
    assert pipeline.get("/health/ready") == {"ready": True, "status": "up"}
    answer = run_cli(config, "health")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "reported by the running pipeline" in answer.stdout
    assert pipeline.stop() == 0


async def test_a_destination_down_makes_the_pipeline_degraded_not_down(stack: Stack) -> None:
    port = free_port()
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    config = write_config(
        stack.workdir / "health_down.yaml",
        _settings(
            stack,
            port,
            [{"name": "pg", "type": "postgres"}, {"name": "ch", "type": "clickhouse"}],
            postgres={"dsn": stack.postgres_dsn},
            clickhouse={"url": nothing_listens},
        ),
    )
    pipeline = Pipeline(config, port, stack.workdir / "health_down.log")
    stack.pipelines.append(pipeline)
    pipeline.start()
    report = pipeline.get("/health")
    assert report["status"] == "degraded", report
    checks = _checks(report)
    assert checks[("destination", "pg")] == "up"
    assert checks[("destination", "ch")] == "down"
    answer = run_cli(config, "health")
    assert answer.returncode == 1, answer.stdout + answer.stderr
    assert pipeline.stop() == 0
