"""The local and in-memory stores against their contracts."""

import pytest

from cdc_adapters.local import (
    JsonLinesDeadLetterQueue,
    JsonLinesSchemaHistory,
    SqliteOffsetStore,
    SystemClock,
)
from cdc_adapters.memory import (
    ManualClock,
    MemoryDeadLetterQueue,
    MemoryOffsetStore,
    MemorySchemaHistory,
)
from tests.contract.clock_contract import ClockContract
from tests.contract.dead_letter_contract import DeadLetterQueueContract
from tests.contract.offset_store_contract import OffsetStoreContract
from tests.contract.schema_history_contract import SchemaHistoryContract


class TestMemoryOffsetStore(OffsetStoreContract):
    @pytest.fixture
    def offset_store(self):
        return MemoryOffsetStore(ManualClock())

    @pytest.fixture
    def reopen(self, offset_store):
        async def again():
            return offset_store

        return again


class TestSqliteOffsetStore(OffsetStoreContract):
    @pytest.fixture
    def path(self, tmp_path):
        return str(tmp_path / "state" / "offsets.db")

    @pytest.fixture
    async def offset_store(self, path):
        store = SqliteOffsetStore(path, SystemClock())
        yield store
        await store.aclose()

    @pytest.fixture
    def reopen(self, path):
        async def again():
            return SqliteOffsetStore(path, SystemClock())

        return again


class TestMemoryDeadLetterQueue(DeadLetterQueueContract):
    @pytest.fixture
    def dead_letter_queue(self):
        return MemoryDeadLetterQueue()

    @pytest.fixture
    def reopen(self, dead_letter_queue):
        async def again():
            return dead_letter_queue

        return again


class TestJsonLinesDeadLetterQueue(DeadLetterQueueContract):
    @pytest.fixture
    def path(self, tmp_path):
        return str(tmp_path / "dlq" / "dead_letters.jsonl")

    @pytest.fixture
    def dead_letter_queue(self, path):
        return JsonLinesDeadLetterQueue(path)

    @pytest.fixture
    def reopen(self, path):
        async def again():
            return JsonLinesDeadLetterQueue(path)

        return again


class TestSystemClock(ClockContract):
    @pytest.fixture
    def clock(self):
        return SystemClock()


class TestManualClock(ClockContract):
    @pytest.fixture
    def clock(self):
        return ManualClock()


class TestMemorySchemaHistory(SchemaHistoryContract):
    @pytest.fixture
    def schema_history(self):
        return MemorySchemaHistory()

    @pytest.fixture
    def reopen(self, schema_history):
        async def again():
            return schema_history

        return again


class TestJsonLinesSchemaHistory(SchemaHistoryContract):
    @pytest.fixture
    def path(self, tmp_path):
        return str(tmp_path / "history" / "schema_history.jsonl")

    @pytest.fixture
    def schema_history(self, path):
        return JsonLinesSchemaHistory(path)

    @pytest.fixture
    def reopen(self, path):
        async def again():
            return JsonLinesSchemaHistory(path)

        return again


async def test_a_jsonl_dead_letter_queue_sees_another_process_replay(tmp_path):
    from tests.contract.dead_letter_contract import dead

    path = str(tmp_path / "dlq.jsonl")
    pipeline, operator = JsonLinesDeadLetterQueue(path), JsonLinesDeadLetterQueue(path)
    entry = dead(1)
    await pipeline.write([entry])
    assert len(await pipeline.list()) == 1
    await operator.mark_replayed([entry.dlq_id])
    assert await pipeline.list() == []


async def test_a_jsonl_schema_history_sees_another_process_record(tmp_path):
    from cdc_domain.schema_changes import SchemaDiff
    from tests.contract.schema_history_contract import AT, ORDERS

    path = str(tmp_path / "history.jsonl")
    pipeline, operator = JsonLinesSchemaHistory(path), JsonLinesSchemaHistory(path)
    assert await pipeline.applied("pg") == {}
    await operator.record("pg", SchemaDiff().created(ORDERS), AT)
    assert await pipeline.applied("pg") == {"shop.orders": ORDERS}


async def test_a_sqlite_offsets_file_from_before_snapshots_gains_their_column(tmp_path):
    import sqlite3

    from cdc_domain.events import SourcePosition
    from cdc_domain.offsets import Checkpoint

    path = tmp_path / "offsets.db"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE cdc_offsets (destination TEXT NOT NULL, partition_id TEXT NOT NULL, "
            "segment_id INTEGER NOT NULL, position INTEGER NOT NULL, event_index INTEGER NOT NULL, "
            "events_processed INTEGER NOT NULL, updated_at TEXT NOT NULL, "
            "PRIMARY KEY (destination, partition_id))"
        )
        old.execute(
            "INSERT INTO cdc_offsets VALUES ('pg', 'node1', 5, 50, 0, 12, "
            "'2026-01-01T00:00:00+00:00')"
        )
    old.close()
    store = SqliteOffsetStore(str(path), SystemClock())
    try:
        record = await store.load("pg", "node1")
        assert (record.position, record.events_processed) == (SourcePosition(5, 50), 12)
        position = SourcePosition(-1, 1, 2, "r1")
        await store.commit("pg", Checkpoint("snapshot/node1/shop.t", position, 0))
        assert (await store.load("pg", "snapshot/node1/shop.t")).position == position
    finally:
        await store.aclose()
