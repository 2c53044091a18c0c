from __future__ import annotations

from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import TransientError
from cdc_domain.health import HealthReport, HealthStatus
from cdc_domain.mirror import MirrorState
from cdc_domain.ports import SinkBatch
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import ChangeKind, SchemaChange


class MemorySink:
    """A mirror held in memory with the reference semantics (:class:`MirrorState`).

    ``fail_next`` makes the next writes fail as a lost connection would, so tests can
    exercise the pipeline's failure handling with a real, not a mocked, sink.
    """

    def __init__(self, name: str = "memory", kind: DestinationKind = DestinationKind.MEMORY):
        self._name = name
        self._kind = kind
        self.state = MirrorState()
        self.tables: dict[str, TableSchema] = {}
        self.applied_changes: list[SchemaChange] = []
        self.batches: list[SinkBatch] = []
        self.fail_next = 0
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> DestinationKind:
        return self._kind

    @property
    def commits_offsets(self) -> bool:
        return False

    async def write(self, batch: SinkBatch) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError(f"{self._name} is unavailable")
        for name, schema in batch.schemas.items():
            self.tables.setdefault(name, schema)
        self.state.apply_all(batch.events, batch.schemas)
        self.batches.append(batch)

    async def apply_schema_change(self, change: SchemaChange) -> None:
        change.require_compatible(self._kind, self._name)
        if change.kind is ChangeKind.DROP_TABLE:
            self.tables.pop(change.qualified_table, None)
        else:
            self.tables[change.qualified_table] = change.schema
            self.state.define(change.schema)
        if change not in self.applied_changes:
            self.applied_changes.append(change)

    async def health(self) -> HealthReport:
        status = HealthStatus.DOWN if self.fail_next else HealthStatus.UP
        return HealthReport(self._name, status, latency_ms=0.0)

    async def aclose(self) -> None:
        self.closed = True
