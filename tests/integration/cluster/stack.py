"""Three agents, one per node of a real Cassandra cluster, streaming into one set of
destinations: the product as a cluster runs it.

Each agent reads hard links to its own node's ``cdc_raw`` (the live directories are shared
with other tests), has its own ``partition_id``, health port and local state, and puts
its own node first in ``cassandra.hosts``. The destinations, the dead letter queue
(PostgreSQL) and the schema history are shared, as a deployment shares them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.cluster.conftest import ClusterNode
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

    def wait_all_caught_up(self, timeout: float = 300) -> None:
        """Until every running agent has delivered what its node holds now."""
        targets = [(agent, agent.durable_end()) for agent in self.agents]
        for agent, target in targets:
            if agent.pipeline.alive():
                agent.pipeline.wait_caught_up(target, timeout)
