"""The in-memory world the use case runs in: one of each port."""

import pytest

from cdc_adapters.memory import (
    ManualClock,
    MemoryChangeSource,
    MemoryDeadLetterQueue,
    MemoryOffsetStore,
    MemorySchemaHistory,
    MemorySchemaSource,
)
from tests.factories import table

ORDERS = table("orders", regular={"status": "text", "email": "text", "hits": "counter"})


@pytest.fixture
def world():
    clock = ManualClock()
    return {
        "clock": clock,
        "source": MemoryChangeSource("node1"),
        "schemas": MemorySchemaSource([ORDERS, table("items")]),
        "dlq": MemoryDeadLetterQueue(),
        "offsets": MemoryOffsetStore(clock),
        "history": MemorySchemaHistory(),
    }
