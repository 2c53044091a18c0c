"""``kill -9`` of the pipeline at random points while the workload runs, twelve times,
restarting it each time: nothing is lost and nothing is applied twice. PostgreSQL and
ClickHouse end equal to Cassandra; TimescaleDB holds every change exactly once (its
event ids are unique, and are exactly the captured ones)."""

from __future__ import annotations

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.kills import kill_at_random_points


@pytest.mark.timeout(300)  # 26 s measured
async def test_kill_9_at_random_points_loses_and_duplicates_nothing(stack: Stack) -> None:
    await kill_at_random_points(stack)
