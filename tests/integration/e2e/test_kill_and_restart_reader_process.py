"""The kill suite with the commit log reader in a process of its own
(``source.reader_process``): ``kill -9`` of the agent at random points, twelve times,
loses and duplicates nothing, and its orphaned reader ends with it every time."""

from __future__ import annotations

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.kills import kill_at_random_points


@pytest.mark.timeout(300)  # 31 s measured
async def test_kill_9_with_a_reader_process_loses_duplicates_and_leaves_nothing(
    stack: Stack,
) -> None:
    await kill_at_random_points(stack, reader_process=True)
