"""One isolated stack per test module: a keyspace, a PostgreSQL database, a ClickHouse
database and a TimescaleDB schema, and ``cdc-app run`` processes streaming between them.

TimescaleDB (the WASM server here) takes one connection at a time: the tests read it
only while no pipeline runs.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cdc_adapters.postgres import create_pool
from cdc_domain.masking import MaskingPolicy
from tests.integration.e2e import compare
from tests.integration.e2e.harness import (
    CdcRawLinks,
    Pipeline,
    free_port,
    pipeline_settings,
    write_config,
)


@dataclass
class Stack:
    keyspace: str
    hosts: str
    session: Any
    live_cdc_raw: Path
    workdir: Path
    postgres_dsn: str
    clickhouse_url: str
    timescaledb_dsn: str
    timescaledb_schema: str
    policy: MaskingPolicy = field(default_factory=MaskingPolicy)
    pipelines: list[Pipeline] = field(default_factory=list)

    @property
    def clickhouse_float_ulps(self) -> int:
        version = clickhouse_query(self.clickhouse_url, "SELECT version()").strip()
        return compare.clickhouse_float_ulps(version)

    @property
    def pipeline_cdc_raw(self) -> Path:
        return self.workdir / "cdc_raw"

    @property
    def reference_cdc_raw(self) -> Path:
        return self.workdir / "cdc_raw_reference"

    @property
    def config(self) -> Path:
        return self.workdir / "cdc.yaml"

    def links(self) -> CdcRawLinks:
        return CdcRawLinks(self.live_cdc_raw, [self.pipeline_cdc_raw, self.reference_cdc_raw])

    def pipeline(self, **overrides: Any) -> Pipeline:
        """A pipeline into all three destinations (``overrides`` go to
        :func:`pipeline_settings`: ``timescaledb_dsn=None`` leaves TimescaleDB out)."""
        port = free_port()
        options: dict[str, Any] = {
            "workdir": self.workdir,
            "cdc_raw_dir": self.pipeline_cdc_raw,
            "keyspace": self.keyspace,
            "cassandra_hosts": self.hosts,
            "postgres_dsn": self.postgres_dsn,
            "clickhouse_url": self.clickhouse_url,
            "clickhouse_prefix": "",
            "timescaledb_dsn": self.timescaledb_dsn,
            "timescaledb_schema": self.timescaledb_schema,
            "port": port,
        } | overrides
        write_config(self.config, pipeline_settings(**options))
        pipeline = Pipeline(self.config, port, self.workdir / "pipeline.log")
        self.pipelines.append(pipeline)
        return pipeline

    async def mirror_differences(self, tables: list[str] | None = None) -> dict[str, list[str]]:
        """Per table and destination, how PostgreSQL and ClickHouse differ from Cassandra
        (empty when they are equal). Safe while a pipeline runs."""
        found: dict[str, list[str]] = {}
        current = compare.schemas(self.hosts, self.keyspace)
        pool = await create_pool(self.postgres_dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as connection:
                for name in tables or sorted(current):
                    schema = current[name]
                    expected = compare.cassandra_rows(self.session, schema, self.policy)
                    pg = await compare.postgres_rows(connection, schema)
                    ch = await compare.clickhouse_rows(self.clickhouse_url, self.keyspace, schema)
                    if problems := compare.differences(expected, pg):
                        found[f"pg {name}"] = problems
                    if problems := compare.differences(
                        expected, ch, float_ulps=self.clickhouse_float_ulps
                    ):
                        found[f"ch {name}"] = problems
        finally:
            await pool.close()
        return found

    async def assert_mirrors_equal(self, tables: list[str] | None = None) -> None:
        found = await self.mirror_differences(tables)
        assert not found, "destinations differ from Cassandra:\n" + "\n".join(
            f"  {where}: {problem}" for where, problems in found.items() for problem in problems
        )

    async def history_problems(self) -> dict[str, str]:
        """Per table, how TimescaleDB's history differs from what the source captured:
        every captured write exactly once (and, beside them, each snapshot event once).
        Only while no pipeline runs."""
        captured = await compare.captured_writes(
            self.reference_cdc_raw, self.hosts, self.keyspace, self.policy
        )
        connection = await asyncpg.connect(self.timescaledb_dsn)
        problems = {}
        try:
            for table, writes in sorted(captured.items()):
                held = await compare.history(connection, self.timescaledb_schema, table)
                streamed = set(held["streamed"])
                if len(held["ids"]) != len(set(held["ids"])):
                    problems[table] = f"{len(held['ids']) - len(set(held['ids']))} duplicates"
                elif len(held["streamed"]) != len(streamed):
                    problems[table] = f"{len(held['streamed']) - len(streamed)} writes twice"
                elif streamed != writes:
                    missing, extra = writes - streamed, streamed - writes
                    problems[table] = f"{len(missing)} missing, {len(extra)} unexpected"
        finally:
            await connection.close()
        if not captured:
            problems["*"] = "the source captured nothing"
        return problems

    async def history_differences(self, tables: list[str] | None = None) -> dict[str, list[str]]:
        """Per table, how the state TimescaleDB's history implies differs from Cassandra
        (see :func:`compare.history_rows`). Only while no pipeline runs."""
        found: dict[str, list[str]] = {}
        current = compare.schemas(self.hosts, self.keyspace)
        connection = await asyncpg.connect(self.timescaledb_dsn)
        try:
            for name in tables or sorted(current):
                schema = current[name]
                expected = compare.cassandra_rows(self.session, schema, self.policy)
                held = await compare.history_rows(connection, self.timescaledb_schema, schema)
                if problems := compare.differences(expected, held):
                    found[f"ts {name}"] = problems
        finally:
            await connection.close()
        return found

    def dead_letters(self) -> list[dict[str, Any]]:
        path = self.workdir / "dead_letters.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def clickhouse_query(url: str, sql: str) -> str:
    request = urllib.request.Request(url, data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        text: str = response.read().decode()
        return text


@pytest.fixture(scope="module")
async def stack(
    cassandra_endpoint: Any,
    cassandra_session: Any,
    cdc_raw_dir: Path,
    cassandra_keyspace: str,
    postgres_database_dsn: str,
    clickhouse_url: str,
    timescaledb_dsn: str,
    timescaledb_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    stack = Stack(
        keyspace=cassandra_keyspace,
        hosts=cassandra_endpoint.contact_point,
        session=cassandra_session,
        live_cdc_raw=cdc_raw_dir,
        workdir=tmp_path_factory.mktemp("e2e"),
        postgres_dsn=postgres_database_dsn,
        clickhouse_url=clickhouse_url,
        timescaledb_dsn=timescaledb_dsn,
        timescaledb_schema=timescaledb_schema,
    )
    yield stack
    # A failed test leaves its pipeline running; it must not outlive the module (it
    # would hold the one TimescaleDB connection).
    for pipeline in stack.pipelines:
        if pipeline.alive():
            pipeline.kill()
    clickhouse_query(clickhouse_url, f"DROP DATABASE IF EXISTS {cassandra_keyspace}")
