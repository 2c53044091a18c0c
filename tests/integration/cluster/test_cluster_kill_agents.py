"""The agents killed with ``kill -9`` at random points while the workload runs, twelve
times across the three, each restarted: no batch committed half, no offset ahead of its
data, and the copies the other agents delivered meanwhile changing nothing. Afterwards
every destination equals Cassandra read at ``ALL`` and the history holds each write once."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from tests.integration.cluster.stack import ClusterStack
from tests.integration.e2e.workload import Workload, Writer, create_tables, evolving

KILLS = 12


@pytest.mark.timeout(900)
async def test_agents_killed_at_random_points_converge(cluster_stack: ClusterStack) -> None:
    stack = cluster_stack
    session = stack.session
    create_tables(session, stack.keyspace)
    workload = Workload(stack.keyspace, seed=41)
    evolve = evolving(session, workload, (3000, 5000, 7000))
    stack.configure(max_batch_events=500)
    rng = random.Random(43)
    done = threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        def paced(statements: int) -> None:
            evolve(statements)
            time.sleep(0.3)  # spreads the workload over every kill and restart

        try:
            Writer(session).until(workload, 10_000, between=paced)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    with stack.links():
        for agent in stack.agents:
            agent.pipeline.start()
        thread = threading.Thread(target=write, name="workload")
        thread.start()
        try:
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.5, 4.0))
                victim = rng.choice(stack.agents).pipeline
                victim.kill()
                await asyncio.to_thread(victim.start)
        finally:
            thread.join()
        assert not failure, failure
        stack.wait_all_caught_up(600)
    assert sum(agent.pipeline.starts for agent in stack.agents) == len(stack.agents) + KILLS
    await stack.assert_converged()
