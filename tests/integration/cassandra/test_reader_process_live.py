"""The commit log reader in a process of its own, on the live node: what it serves is
what the reader in the agent's own process serves, read ahead or not, and a reader killed
at any point, or orphaned by its parent's death, loses nothing and lingers nowhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from cdc_view import CdcRawView
from live_source import Consumer, live_source

from cdc_adapters.cassandra.reader_process import ProcessChangeSource, ReaderSpec
from cdc_adapters.cassandra.schema_source import CassandraSchemaSource
from cdc_domain.errors import TransientError
from cdc_domain.events import ChangeEvent
from tests.support.processes import ended
from tests.support.waiting import eventually

_ids = itertools.count(1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def table(cassandra_session: Any, keyspace: str) -> str:
    cassandra_session.execute(
        f"CREATE TABLE {keyspace}.reader (id int PRIMARY KEY, v text, n list<int>) WITH cdc = true"
    )
    return f"{keyspace}.reader"


@pytest.fixture
async def process_source(
    cdc_view: CdcRawView, hosts: list[str], table: str
) -> AsyncIterator[ProcessChangeSource]:
    source = ProcessChangeSource(
        ReaderSpec(
            partition_id="it-node",
            cdc_raw_dir=str(cdc_view.view),
            hosts=tuple(hosts),
            tables=(table,),
        )
    )
    yield source
    await source.aclose()


async def written(
    session: Any, table: str, count: int, view: CdcRawView, schemas: CassandraSchemaSource
) -> set[int]:
    """``count`` rows, returned once a reader of the agent's own process sees them all."""
    ids = {next(_ids) for _ in range(count)}
    insert = session.prepare(f"INSERT INTO {table} (id, v, n) VALUES (?, ?, ?)")
    for row_id in sorted(ids):
        session.execute(insert, (row_id, f"v{row_id}", [row_id, row_id + 1]))
    probe = Consumer(live_source(view, schemas, table), view)
    await probe.until(lambda events: ids <= {e.partition_key["id"] for e in events})
    await probe.source.aclose()
    return ids


def _read_alike(event: ChangeEvent) -> ChangeEvent:
    """The event as any reader decodes it: without the moment this one read it."""
    return attrs.evolve(event, captured_at=EPOCH)


@pytest.mark.timeout(180)
async def test_batches_read_ahead_equal_those_read_in_the_agents_process(
    cassandra_session: Any,
    table: str,
    cdc_view: CdcRawView,
    schemas: CassandraSchemaSource,
    process_source: ProcessChangeSource,
) -> None:
    await written(cassandra_session, table, 40, cdc_view, schemas)
    direct = live_source(cdc_view, schemas, table)
    after_direct = after_process = None
    for _ in range(20):
        ours = await direct.read(after_direct, 7)
        theirs = await process_source.read(after_process, 7)
        assert theirs.end == ours.end
        assert [_read_alike(e) for e in theirs.events] == [_read_alike(e) for e in ours.events]
        assert dict(theirs.schemas) == dict(ours.schemas)
        if ours.end is None or ours.end == after_direct:
            break
        after_direct, after_process = ours.end, theirs.end
    await direct.aclose()
    assert after_direct is not None


@pytest.mark.timeout(180)
async def test_a_killed_reader_fails_one_read_and_the_next_reader_goes_on(
    cassandra_session: Any,
    table: str,
    cdc_view: CdcRawView,
    schemas: CassandraSchemaSource,
    process_source: ProcessChangeSource,
) -> None:
    ids = await written(cassandra_session, table, 30, cdc_view, schemas)
    first = await process_source.read(None, 10)
    assert len(first.events) == 10
    pid = process_source.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(TransientError, match="exited"):
        await process_source.read(first.end, 10)
    consumer = Consumer(process_source, cdc_view)  # type: ignore[arg-type]
    consumer.after = first.end
    seen_ids = {e.partition_key["id"] for e in first.events}
    rest = await consumer.until(
        lambda events: ids <= seen_ids | {e.partition_key["id"] for e in events}
    )
    assert process_source.pid not in (None, pid)
    seen = [e.event_id for e in [*first.events, *rest]]
    assert len(seen) == len(set(seen)), "an event read twice"


@pytest.mark.timeout(180)
async def test_the_reader_ends_when_its_parent_is_killed(
    cdc_view: CdcRawView, hosts: list[str], table: str, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from cdc_adapters.cassandra.reader_process import ProcessChangeSource, ReaderSpec

        async def main():
            source = ProcessChangeSource(ReaderSpec(
                partition_id="it-node", cdc_raw_dir={str(cdc_view.view)!r},
                hosts={tuple(hosts)!r}, tables=({table!r},)))
            await source.read(None, 10)
            print(source.pid, flush=True)
            await asyncio.sleep(600)

        if __name__ == "__main__":
            asyncio.run(main())
        """
    )
    path = tmp_path / "parent.py"
    path.write_text(script)
    parent = await asyncio.create_subprocess_exec(
        sys.executable, str(path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        child = int(await parent.stdout.readline())
        parent.kill()
        await parent.wait()

        await eventually(
            functools.partial(ended, [child]),
            within=60,
            what=f"reader {child} ending after its parent",
        )
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


async def test_storage_is_measured_without_the_reader(
    process_source: ProcessChangeSource, cdc_view: CdcRawView
) -> None:
    storage = await process_source.storage()
    assert storage.location == str(cdc_view.view)
    assert process_source.pid is None


@pytest.mark.timeout(120)
async def test_the_reader_leaves_stopping_to_its_agent(
    process_source: ProcessChangeSource,
) -> None:
    """SIGINT and SIGTERM reach a terminal's or a service's whole process group; the
    agent stops in order and its closing ends the reader."""
    await process_source.read(None, 1)
    pid = process_source.pid
    assert pid is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        os.kill(pid, signum)
    await process_source.read(None, 1)
    assert process_source.pid == pid
    await process_source.aclose()
    await eventually(functools.partial(ended, [pid]), within=30, what="the reader ending")
