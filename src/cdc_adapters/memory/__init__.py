"""In-memory adapters of every port: reference implementations for the contract suites
and fast, real collaborators for the domain's tests."""

from cdc_adapters.memory.clock import ManualClock
from cdc_adapters.memory.dead_letters import MemoryDeadLetterQueue
from cdc_adapters.memory.offsets import MemoryOffsetStore
from cdc_adapters.memory.schema_history import MemorySchemaHistory
from cdc_adapters.memory.schemas import MemorySchemaSource
from cdc_adapters.memory.sink import MemorySink
from cdc_adapters.memory.snapshot import MemorySnapshotSource
from cdc_adapters.memory.source import MemoryChangeSource

__all__ = [
    "ManualClock",
    "MemoryChangeSource",
    "MemoryDeadLetterQueue",
    "MemoryOffsetStore",
    "MemorySchemaHistory",
    "MemorySchemaSource",
    "MemorySink",
    "MemorySnapshotSource",
]
