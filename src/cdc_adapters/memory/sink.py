from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from cdc_adapters.memory.offsets import MemoryOffsetStore
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import TransientError
from cdc_domain.events import ChangeEvent
from cdc_domain.health import HealthReport, HealthStatus
from cdc_domain.identity import write_id
from cdc_domain.mirror import MirrorState
from cdc_domain.ports import Clock, SinkBatch
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import ChangeKind, SchemaChange


class MemorySink:
    """A mirror held in memory with the reference semantics (:class:`MirrorState`).

    ``fail_next`` makes the next writes fail as a lost connection would, so tests can
    exercise the pipeline's failure handling with a real, not a mocked, sink.

    Given ``offsets``, the sink commits offsets as a database sink does in its batch's
    transaction: each batch's checkpoint moves in the same step as its events, with no
    suspension point between them, so nothing (a crash, a cancellation) can come
    between the two. With ``absorb_copies`` it keeps one record per write, as the
    TimescaleDB history does: an event whose write it already holds is absorbed and
    counted (:class:`~cdc_domain.ports.CopiesReporting`) instead of applied again.
    """

    def __init__(
        self,
        name: str = "memory",
        kind: DestinationKind = DestinationKind.MEMORY,
        *,
        offsets: MemoryOffsetStore | None = None,
        absorb_copies: bool = False,
    ):
        self._name = name
        self._kind = kind
        self._offsets = offsets
        self._writes: set[str] | None = set() if absorb_copies else None
        self._absorbed: Counter[str] = Counter()
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
        return self._offsets is not None

    def offset_store(self, clock: Clock) -> MemoryOffsetStore:
        """The store given at construction, which this sink's writes move (its own
        clock stamps them); ``clock`` is not needed."""
        if self._offsets is None:
            raise TypeError(f"memory sink {self._name} was given no offset store to commit to")
        return self._offsets

    async def write(self, batch: SinkBatch) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError(f"{self._name} is unavailable")
        for name, schema in batch.schemas.items():
            self.tables.setdefault(name, schema)
        if self._writes is None:
            self.state.apply_all(batch.events, batch.schemas)
        else:
            fresh, absorbed = self._fresh(batch.events, self._writes)
            self.state.apply_all(fresh.values(), batch.schemas)
            self._writes.update(fresh)
            self._absorbed.update(absorbed)
        self.batches.append(batch)
        if self._offsets is not None and batch.checkpoint is not None:
            self._offsets.advance(self._name, batch.checkpoint)

    @staticmethod
    def _fresh(
        events: Iterable[ChangeEvent], held: set[str]
    ) -> tuple[dict[str, ChangeEvent], Counter[str]]:
        """The events of writes not held yet, by write id, and the copies per table."""
        fresh: dict[str, ChangeEvent] = {}
        absorbed: Counter[str] = Counter()
        for event in events:
            identity = write_id(event)
            if identity in held or identity in fresh:
                absorbed[event.qualified_table] += 1
            else:
                fresh[identity] = event
        return fresh, absorbed

    def take_absorbed_copies(self) -> Mapping[str, int]:
        taken, self._absorbed = dict(self._absorbed), Counter()
        return taken

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
