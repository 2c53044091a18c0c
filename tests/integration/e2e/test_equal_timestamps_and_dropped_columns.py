"""Cassandra's own answer for two writes of one cell with the same ``USING TIMESTAMP``
(the greater value wins, in whichever order they arrive) and for rows that only a
dropped column kept alive (Cassandra stops returning them): every destination agrees."""

from __future__ import annotations

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end


@pytest.mark.timeout(240)
async def test_ties_and_rows_kept_by_a_dropped_column_end_as_cassandra_has_them(
    stack: Stack,
) -> None:
    ks, session = stack.keyspace, stack.session
    session.execute(
        f"CREATE TABLE {ks}.ties (id int PRIMARY KEY, t text, n int, b blob, gone text) "
        "WITH cdc = true"
    )
    with stack.links():
        pipeline = stack.pipeline()
        pipeline.start()
        writes = [("'b'", 1, "0x02"), ("'a'", -1, "0x01")]
        for key, order in ((1, writes), (2, writes[::-1])):
            for text, number, blob in order:
                session.execute(
                    f"UPDATE {ks}.ties USING TIMESTAMP 1000 SET t = {text}, n = {number}, "
                    f"b = {blob} WHERE id = {key}"
                )
        session.execute(f"UPDATE {ks}.ties USING TIMESTAMP 1000 SET t = 'x' WHERE id = 3")
        session.execute(f"DELETE t FROM {ks}.ties USING TIMESTAMP 1000 WHERE id = 3")
        session.execute(f"UPDATE {ks}.ties SET gone = 'only this' WHERE id = 4")
        session.execute(f"UPDATE {ks}.ties SET gone = 'and', n = 4 WHERE id = 5")
        session.execute(f"INSERT INTO {ks}.ties (id, gone) VALUES (6, 'marker')")
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        session.execute(f"ALTER TABLE {ks}.ties DROP gone")
        session.execute(f"INSERT INTO {ks}.ties (id, t) VALUES (7, 'after the drop')")
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert pipeline.stop() == 0, pipeline.tail()

    rows = {row.id: row for row in session.execute(f"SELECT * FROM {ks}.ties")}
    assert (rows[1].t, rows[1].n, rows[2].t, rows[2].n) == ("b", -1, "b", -1)
    assert 3 not in rows
    assert 4 not in rows
    assert {5, 6} <= set(rows)
    await stack.assert_mirrors_equal(["ties"])
    assert await stack.history_problems() == {}
