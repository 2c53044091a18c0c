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
