"""Three agents, one per node of a real Cassandra cluster, streaming into one set of
destinations: the product as a cluster runs it.

Each agent reads hard links to its own node's ``cdc_raw`` (the live directories are shared
with other tests), has its own ``partition_id``, health port and local state, and puts
its own node first in ``cassandra.hosts``. The destinations, the dead letter queue
(PostgreSQL) and the schema history are shared, as a deployment shares them.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from cdc_adapters.cassandra import CassandraChangeSource, CassandraSchemaSource
from cdc_adapters.postgres import create_pool
from cdc_domain.identity import write_id
from cdc_domain.masking import MaskingPolicy
from tests.integration.cluster.conftest import ClusterNode
from tests.integration.e2e import compare
from tests.integration.e2e.conftest import clickhouse_query
from tests.integration.e2e.harness import (
    CdcRawLinks,
    Pipeline,
    Position,
    durable_end,
    free_port,
    pipeline_settings,
    write_config,
)


@dataclass
class Agent:
    node: ClusterNode
    workdir: Path
    pipeline: Pipeline

    @property
    def cdc_raw(self) -> Path:
        return self.workdir / "cdc_raw"

    @property
    def reference(self) -> Path:
        """Links nothing deletes from: what this node's commit log held."""
        return self.workdir / "cdc_raw_reference"

    def durable_end(self) -> Position:
        return durable_end(self.reference)


class AllReads:
    """The cluster session as :mod:`compare` uses one, each read at ``ALL``: every
    replica answers, so a comparison never reads one that missed a write."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def execute(self, query: str) -> Any:
        return self._session.execute(query, execution_profile="all")


TIMESCALEDB_TURNS = {"pool_idle_s": 0.05, "connect_timeout_s": 600}
"""The agents share the development TimescaleDB, which serves one connection at a
time: each gives it back between batches and waits its turn (config/example.yaml)."""


@dataclass
class ClusterStack:
    keyspace: str
    session: Any
    nodes: list[ClusterNode]
    workdir: Path
    postgres_dsn: str
    clickhouse_url: str
    timescaledb_dsn: str
    timescaledb_schema: str
    dead_letter_schema: str
    agents: list[Agent] = field(default_factory=list)

    def configure(self, **overrides: Any) -> list[Agent]:
        """One agent per node (not started)."""
        self.agents = []
        for node in self.nodes:
            workdir = self.workdir / f"node{node.number}"
            others = [n.host for n in self.nodes if n is not node]
            port = free_port()
            options: dict[str, Any] = {
                "workdir": workdir,
                "cdc_raw_dir": workdir / "cdc_raw",
                "keyspace": self.keyspace,
                "cassandra_hosts": ",".join([node.host, *others]),
                "postgres_dsn": self.postgres_dsn,
                "clickhouse_url": self.clickhouse_url,
                "clickhouse_prefix": "",
                "timescaledb_dsn": self.timescaledb_dsn,
                "timescaledb_schema": self.timescaledb_schema,
                "port": port,
            } | overrides
            settings = pipeline_settings(**options)
            settings["source"]["partition_id"] = f"node{node.number}"
            settings["dead_letters"] = {"type": "postgres", "schema": self.dead_letter_schema}
            if "timescaledb" in settings:
                settings["timescaledb"] |= TIMESCALEDB_TURNS
            config = write_config(workdir / "cdc.yaml", settings)
            self.agents.append(Agent(node, workdir, Pipeline(config, port, workdir / "agent.log")))
        return self.agents

    @contextlib.contextmanager
    def links(self) -> Iterator[None]:
        """Every agent's copies of its node's ``cdc_raw`` kept up to date meanwhile."""
        with contextlib.ExitStack() as stack:
            for agent in self.agents:
                stack.enter_context(
                    CdcRawLinks(agent.node.cdc_raw_dir, [agent.cdc_raw, agent.reference])
                )
            yield

    @property
    def hosts(self) -> str:
        return ",".join(node.host for node in self.nodes)

    def wait_all_caught_up(self, timeout: float = 300) -> None:
        """Until every running agent has delivered what its node holds now. Polled once
        a second: every ``/status`` takes a turn on TimescaleDB's one connection."""
        targets = [(agent, agent.durable_end()) for agent in self.agents]
        deadline = time.monotonic() + timeout
        for agent, target in targets:
            if agent.pipeline.alive():
                left = max(deadline - time.monotonic(), 1.0)
                agent.pipeline.wait_caught_up(target, left, poll=1.0)

    def stop_all(self) -> None:
        for agent in self.agents:
            if agent.pipeline.alive():
                assert agent.pipeline.stop() == 0, agent.pipeline.tail()

    async def mirror_differences(self) -> dict[str, list[str]]:
        """Per table and destination, how PostgreSQL and ClickHouse differ from Cassandra
        read at ``ALL`` (empty when equal)."""
        found: dict[str, list[str]] = {}
        current = compare.schemas(self.hosts, self.keyspace)
        reads, policy = AllReads(self.session), MaskingPolicy()
        version = clickhouse_query(self.clickhouse_url, "SELECT version()").strip()
        ulps = compare.clickhouse_float_ulps(version)
        pool = await create_pool(self.postgres_dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as connection:
                for name in sorted(current):
                    schema = current[name]
                    expected = compare.cassandra_rows(reads, schema, policy)
                    pg = await compare.postgres_rows(connection, schema)
                    ch = await compare.clickhouse_rows(self.clickhouse_url, self.keyspace, schema)
                    if problems := compare.differences(expected, pg):
                        found[f"pg {name}"] = problems
                    if problems := compare.differences(expected, ch, float_ulps=ulps):
                        found[f"ch {name}"] = problems
        finally:
            await pool.close()
        return found

    async def history_differences(self) -> dict[str, list[str]]:
        """Per table, how the state TimescaleDB's history implies differs from Cassandra
        read at ``ALL``. Only while no agent runs (one connection)."""
        found: dict[str, list[str]] = {}
        current = compare.schemas(self.hosts, self.keyspace)
        reads, policy = AllReads(self.session), MaskingPolicy()
        connection = await asyncpg.connect(self.timescaledb_dsn)
        try:
            for name in sorted(current):
                schema = current[name]
                expected = compare.cassandra_rows(reads, schema, policy)
                held = await compare.history_rows(connection, self.timescaledb_schema, schema)
                if problems := compare.differences(expected, held):
                    found[f"ts {name}"] = problems
        finally:
            await connection.close()
        return found

    async def captured_writes_per_node(self) -> dict[int, set[tuple[str, str]]]:
        """(table, write id) of every event each node's commit log held, by node number.
        Events are masked first, as the agents mask them before any destination sees
        them."""
        policy = MaskingPolicy()
        nodes: dict[int, set[tuple[str, str]]] = {}
        for agent in self.agents:
            writes = nodes[agent.node.number] = set()
            schemas = CassandraSchemaSource(hosts=self.hosts.split(","))
            source = CassandraChangeSource(
                partition_id=f"node{agent.node.number}",
                cdc_raw_dir=agent.reference,
                schemas=schemas,
                tables=[f"{self.keyspace}.*"],
            )
            after = None
            try:
                while (batch := await source.read(after, 20_000)).end is not None:
                    writes.update((e.table, write_id(policy.apply(e))) for e in batch.events)
                    after = batch.end
            finally:
                await source.aclose()
                await schemas.aclose()
        return nodes

    async def captured_writes(self) -> dict[str, set[str]]:
        """The write ids of every event the three nodes' commit logs held, by table:
        each write once, however many replicas (and hint replays) recorded it."""
        writes: dict[str, set[str]] = {}
        for node in (await self.captured_writes_per_node()).values():
            for table, write in node:
                writes.setdefault(table, set()).add(write)
        return writes

    async def history_problems(self) -> dict[str, str]:
        """Per table, how TimescaleDB's history differs from the writes the nodes
        captured: each exactly once. A snapshot's row may stand for a write (one that
        wrote exactly the cells the snapshot read: the same write id, so one record);
        snapshot rows are otherwise none of the stream's. Only while no agent runs."""
        captured = await self.captured_writes()
        problems = {}
        connection = await asyncpg.connect(self.timescaledb_dsn)
        try:
            for table, writes in sorted(captured.items()):
                held = await connection.fetch(
                    'SELECT "_cdc_write_id" AS write, "_cdc_event_id" LIKE \'snapshot:%\' '
                    f'AS snapshot FROM "{self.timescaledb_schema}"."{table}"'
                )
                ids = Counter(row["write"] for row in held)
                streamed = {row["write"] for row in held if not row["snapshot"]}
                twice = sum(n - 1 for n in ids.values())
                missing, extra = len(writes - set(ids)), len(streamed - writes)
                if twice or missing or extra:
                    problems[table] = f"{twice} duplicates, {missing} missing, {extra} unexpected"
        finally:
            await connection.close()
        if not captured:
            problems["*"] = "the nodes captured nothing"
        return problems

    async def dead_letters(self) -> dict[str, int]:
        """Dead letters by destination, reason and table, with one's error for each."""
        connection = await asyncpg.connect(self.postgres_dsn)
        try:
            table = f"{self.dead_letter_schema}.cdc_dead_letters"
            if await connection.fetchval("SELECT to_regclass($1)", table) is None:
                return {}
            rows = await connection.fetch(
                "SELECT destination, reason, source_table, count(*) AS n, "
                "min(payload->>'error') AS error "
                f"FROM {table} GROUP BY destination, reason, source_table"
            )
            return {
                f"{r['destination']} {r['reason']} {r['source_table']} ({r['error']})": r["n"]
                for r in rows
            }
        finally:
            await connection.close()

    async def assert_converged(self) -> None:
        """Every agent stopped: each destination equals Cassandra read at ``ALL``, the
        history holds each captured write once, no write was dead-lettered."""
        self.stop_all()
        history_problems = await self.history_problems()
        assert not history_problems, f"the history is not each write once: {history_problems}"
        mirrors = await self.mirror_differences()
        history = await self.history_differences()
        found = mirrors | history
        assert not found, "destinations differ from Cassandra:\n" + "\n".join(
            f"  {where}: {problem}" for where, problems in found.items() for problem in problems
        )
        dead = await self.dead_letters()
        assert not dead, f"{sum(dead.values())} dead letters: {dead}"
