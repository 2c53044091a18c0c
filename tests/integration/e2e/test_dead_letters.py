"""Data a destination cannot take goes to the dead letter queue, never blocking the rest,
and is replayed once the destination is fixed; replaying twice changes nothing.

- A ``counter`` table: the mirrors cannot apply increments idempotently, so PostgreSQL
  and ClickHouse dead-letter its events as SCHEMA_INCOMPATIBLE while TimescaleDB's
  history takes every increment.
- A CHECK constraint an operator put on the PostgreSQL mirror rejects some rows
  (a destination error, not retryable): they are dead-lettered for ``pg`` alone; once the
  constraint is dropped, ``cdc-app dlq replay`` delivers them.
"""

from __future__ import annotations

import asyncpg

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end, run_cli


async def test_incompatible_data_is_dead_lettered_then_replayed(stack: Stack) -> None:
    ks, session = stack.keyspace, stack.session
    session.execute(f"CREATE TABLE {ks}.likes (post int PRIMARY KEY, n counter) WITH cdc = true")
    session.execute(
        f"CREATE TABLE {ks}.payments (id int PRIMARY KEY, amount int, email text) WITH cdc = true"
    )
    with stack.links():
        pipeline = stack.pipeline()
        pipeline.start()
        for i in range(20):
            session.execute(f"UPDATE {ks}.likes SET n = n + 1 WHERE post = %s", (i % 5,))
            session.execute(
                f"INSERT INTO {ks}.payments (id, amount, email) VALUES (%s, %s, %s)",
                (i, 10 * i, f"p{i}@example.com"),
            )
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        connection = await asyncpg.connect(stack.postgres_dsn)
        try:
            await connection.execute(
                f'ALTER TABLE "{ks}".payments ADD CONSTRAINT small CHECK (amount < 1000)'
            )
            for i in range(20, 30):  # 10 rows, 7 of them over the limit
                session.execute(
                    f"INSERT INTO {ks}.payments (id, amount, email) VALUES (%s, %s, %s)",
                    (i, 900 + 40 * (i - 20), f"p{i}@example.com"),
                )
            pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
            await _assert_dead_letters(stack)
            # Replay opens every destination, TimescaleDB included, whose server here takes
            # one connection at a time: stop the pipeline first.
            assert pipeline.stop() == 0, pipeline.tail()
            await connection.execute(f'ALTER TABLE "{ks}".payments DROP CONSTRAINT small')
        finally:
            await connection.close()
    replay = ["dlq", "replay", "--destination", "pg", "--reason", "PROCESSING_ERROR"]
    first = run_cli(stack.config, *replay)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith("replayed 7,"), first.stdout
    second = run_cli(stack.config, *replay)
    assert second.stdout.startswith("replayed 0,"), second.stdout
    await stack.assert_mirrors_equal(["payments"])
    # Counters cannot go into a mirror: replayed, they fail again and stay pending.
    counters = run_cli(stack.config, "dlq", "replay", "--destination", "pg")
    assert counters.returncode == 1
    assert "failed again 20" in counters.stdout, counters.stdout
    history = await stack.history_problems()
    assert history == {}


async def _assert_dead_letters(stack: Stack) -> None:
    letters = stack.dead_letters()
    by_kind: dict[tuple[str, str, str], int] = {}
    for letter in letters:
        event = letter["event"]
        key = (letter["destination"], letter["reason"], f"{event['keyspace']}.{event['table']}")
        by_kind[key] = by_kind.get(key, 0) + 1
    likes, payments = f"{stack.keyspace}.likes", f"{stack.keyspace}.payments"
    assert by_kind == {
        ("pg", "SCHEMA_INCOMPATIBLE", likes): 20,
        ("ch", "SCHEMA_INCOMPATIBLE", likes): 20,
        ("pg", "PROCESSING_ERROR", payments): 7,
    }
    assert all("@example.com" not in str(entry) for entry in letters), "emails are masked"
