"""What the snapshot end-to-end tests read back: recorded progress, the ranges a
pipeline read (from its log), and the state of its snapshot (from its endpoint)."""

from __future__ import annotations

import json
from pathlib import Path

from cdc_adapters.local import SqliteOffsetStore, SystemClock
from cdc_adapters.postgres import PostgresOffsetStore, create_pool
from cdc_domain.ports import OffsetStore
from cdc_domain.snapshot_progress import SnapshotProgress, TableProgress
from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import Pipeline

Range = tuple[str, str]  # (table, "start:end")


async def recorded(stack: Stack) -> dict[str, dict[str, TableProgress]]:
    """Each destination's snapshot progress as its store holds it (no pipeline runs)."""
    stores: dict[str, OffsetStore] = {
        "pg": PostgresOffsetStore(dsn=stack.postgres_dsn, schema="public"),
        "ch": SqliteOffsetStore(str(stack.workdir / "offsets.db"), SystemClock()),
    }
    progress = SnapshotProgress("node1")
    found = {}
    try:
        for name, store in stores.items():
            found[name] = await progress.load(store, name)
    finally:
        for store in stores.values():
            await store.aclose()
    pool = await create_pool(stack.timescaledb_dsn, min_size=1, max_size=1)
    try:
        store = PostgresOffsetStore(pool=pool, schema=stack.timescaledb_schema)
        found["ts"] = await progress.load(store, "ts")
    finally:
        await pool.close()
    return found


def done_everywhere(progress: dict[str, dict[str, TableProgress]]) -> set[Range]:
    """Ranges every destination has recorded as finished."""
    per_destination = [
        {(t, str(r)) for t, p in tables.items() for r in p.ranges} for tables in progress.values()
    ]
    return set.intersection(*per_destination)


def ranges_read(log: Path, since: int) -> list[Range]:
    """The ranges a pipeline started reading, from its log after byte ``since``."""
    found = []
    with log.open("rb") as handle:
        handle.seek(since)
        for line in handle.read().decode(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("event") == "snapshot range read":
                found.append((record["table"], record["token_range"]))
    return found


def ranges_done_here(pipeline: Pipeline) -> int:
    answer = pipeline.get("/snapshot")
    snapshot = None if answer is None else answer.get("snapshot")
    return 0 if snapshot is None else sum(t["ranges"]["done"] for t in snapshot["tables"])


def snapshot_state(pipeline: Pipeline) -> str | None:
    answer = pipeline.get("/snapshot")
    snapshot = None if answer is None else answer.get("snapshot")
    return None if snapshot is None else str(snapshot["state"])
