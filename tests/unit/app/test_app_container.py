from __future__ import annotations

import json

from dependency_injector import providers

from cdc_adapters.cassandra.reader_process import ProcessChangeSource
from cdc_adapters.memory import (
    ManualClock,
    MemoryChangeSource,
    MemoryDeadLetterQueue,
    MemoryOffsetStore,
    MemorySchemaHistory,
    MemorySchemaSource,
    MemorySink,
)
from cdc_app.config import settings_from
from cdc_app.container import Container, opened, running
from cdc_app.settings import Settings
from cdc_domain.masking import REDACTED
from cdc_domain.ports import StorageReporting
from tests.factories import event, table

CUSTOMERS = table("customers", regular={"name": "text", "email": "text"})


def memory_settings(**sections: object) -> Settings:
    document = {
        "source": {"type": "memory", "partition_id": "node1"},
        "destinations": [{"name": "mirror", "type": "memory"}],
        "offsets": {"type": "memory"},
        "dead_letters": {"type": "memory"},
        "schema_history": {"type": "memory"},
        **sections,
    }
    return settings_from(document, {})


async def test_one_batch_runs_end_to_end_through_overridden_adapters():
    clock = ManualClock()
    source = MemoryChangeSource("node1")
    source.append(
        event(table="customers", key=1, columns={"name": "Ada", "email": "ada@example.com"}),
        event(table="customers", key=2, columns={"name": "Bob", "email": "bob@example.com"}),
        event(table="unknown", key=3, columns={"x": "y"}),
    )
    sink = MemorySink("mirror")
    dead_letters = MemoryDeadLetterQueue()
    offsets = MemoryOffsetStore(clock)
    container = Container(settings=memory_settings())
    container.clock.override(providers.Object(clock))
    container.source.override(providers.Object(source))
    container.schemas.override(providers.Object(MemorySchemaSource([CUSTOMERS])))
    container.sinks.override(providers.Object([sink]))
    container.offsets.override(providers.Object(offsets))
    container.dead_letters.override(providers.Object(dead_letters))
    container.history.override(providers.Object(MemorySchemaHistory()))

    async with running(container) as components:
        outcomes = await components.replicate(100)

    assert [(o.destination, o.delivered, o.dead_lettered, o.ok) for o in outcomes] == [
        ("mirror", 2, 1, True)
    ]
    written = [e for batch in sink.batches for e in batch.events]
    assert [e.columns for e in written] == [
        {"name": "Ada", "email": REDACTED},
        {"name": "Bob", "email": REDACTED},
    ]
    assert [d.destination for d in await dead_letters.list()] == ["mirror"]
    assert (await offsets.load("mirror", "node1")).position == source.acknowledged


async def test_resources_are_built_from_settings_and_closed_on_exit(tmp_path):
    path = tmp_path / "changes.jsonl"
    settings = memory_settings(
        destinations=[
            {"name": "mirror", "type": "memory"},
            {"name": "audit", "type": "jsonl", "path": str(path)},
        ],
        offsets={"type": "sqlite", "path": str(tmp_path / "offsets.db")},
    )
    container = Container(settings=settings)

    async with running(container) as components:
        mirror, audit = components.sinks
        source = components.source
        outcomes = await components.replicate(10)

    assert [(o.destination, o.ok, o.delivered) for o in outcomes] == [
        ("mirror", True, 0),
        ("audit", True, 0),
    ]
    assert (mirror.name, audit.name, source.partition_id) == ("mirror", "audit", "node1")
    assert mirror.closed
    assert source.closed


async def test_the_cassandra_source_gets_the_space_cdc_raw_is_measured_against(tmp_path):
    """Opening the source connects to nothing: the node is only asked for schemas."""
    (tmp_path / "CommitLog-7-1.log").write_bytes(b"x" * 10)
    settings = memory_settings(
        source={"type": "cassandra", "partition_id": "node1"},
        cassandra={"hosts": ["127.0.0.1:9"], "cdc_raw_dir": str(tmp_path), "cdc_total_space_mb": 3},
    )
    container = Container(settings=settings)

    async with opened(container) as adapters:
        source = await adapters.source()
        assert isinstance(source, StorageReporting)
        storage = await source.storage()

    assert (storage.files, storage.used_bytes, storage.total_bytes) == (1, 10, 3 * 1024 * 1024)


async def test_reader_process_puts_the_commit_log_reader_in_a_child_process(tmp_path):
    """Opening it starts nothing: the reader is spawned by the first read."""
    (tmp_path / "CommitLog-7-1.log").write_bytes(b"x" * 10)
    settings = memory_settings(
        source={"type": "cassandra", "partition_id": "node1", "reader_process": True},
        cassandra={"hosts": ["127.0.0.1:9"], "cdc_raw_dir": str(tmp_path), "cdc_total_space_mb": 3},
    )
    container = Container(settings=settings)

    async with opened(container) as adapters:
        source = await adapters.source()
        assert isinstance(source, ProcessChangeSource)
        assert (source.partition_id, source.pid) == ("node1", None)
        storage = await source.storage()

    assert (storage.files, storage.used_bytes, storage.total_bytes) == (1, 10, 3 * 1024 * 1024)


async def test_jsonl_destination_and_sqlite_offsets_from_settings(tmp_path):
    path = tmp_path / "changes.jsonl"
    settings = memory_settings(
        destinations=[{"name": "audit", "type": "jsonl", "path": str(path)}],
        offsets={"type": "sqlite", "path": str(tmp_path / "offsets.db")},
        dead_letters={"type": "jsonl", "path": str(tmp_path / "dead.jsonl")},
    )
    container = Container(settings=settings)
    source = MemoryChangeSource("node1", [event(table="customers", columns={"email": "a@b.c"})])
    container.source.override(providers.Object(source))
    container.schemas.override(providers.Object(MemorySchemaSource([CUSTOMERS])))

    async with running(container) as components:
        outcomes = await components.replicate(10)
        record = await components.offsets.load("audit", "node1")

    assert [o.delivered for o in outcomes] == [1]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line.get("type") for line in lines] == ["schema_change", None]
    assert lines[1]["columns"] == {"email": REDACTED}
    assert record.position == source.acknowledged
