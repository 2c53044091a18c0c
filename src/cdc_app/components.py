"""Everything a running pipeline is made of, as the container assembles it.

The use case gets the counting wrappers (:mod:`cdc_app.instrumented`); health checks
get the adapters themselves, whose ``health`` the wrappers would hide. The stream and the
snapshot write each destination through one :class:`~cdc_domain.delivery.ExclusiveSink`
and apply its DDL through one :class:`~cdc_domain.schema_evolution.SchemaEvolution`;
snapshot events are counted apart (:class:`~cdc_app.snapshots.SnapshotTracker`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from cdc_app.instrumented import CountingDeadLetters, CountingSink, CountingSource
from cdc_app.metrics import Metrics
from cdc_app.progress import DestinationProgress
from cdc_app.settings import Settings
from cdc_app.snapshots import SnapshotJobs, tuning
from cdc_domain.delivery import ExclusiveSink
from cdc_domain.masking import MaskingPolicy
from cdc_domain.ports import (
    ChangeSource,
    Clock,
    DeadLetterQueue,
    OffsetCommittingSink,
    OffsetStore,
    SchemaHistory,
    SchemaSource,
    Sink,
    SnapshotSource,
)
from cdc_domain.replication import Destination, ReplicateBatch
from cdc_domain.schema_evolution import SchemaEvolution
from cdc_domain.snapshot import Snapshot

__all__ = ["Components", "assemble", "destination_offsets"]


@attrs.frozen
class Components:
    settings: Settings
    clock: Clock
    metrics: Metrics
    source: ChangeSource
    schemas: SchemaSource
    sinks: tuple[Sink, ...]
    offsets: OffsetStore
    dead_letters: DeadLetterQueue
    destinations: tuple[Destination, ...]
    progress: Mapping[str, DestinationProgress]
    replicate: ReplicateBatch
    snapshots: SnapshotJobs


def destination_offsets(
    sinks: Sequence[Sink], shared: OffsetStore, clock: Clock
) -> dict[str, OffsetStore]:
    """Each destination's offset store. A sink that commits offsets with its batches
    reads them back from its own database (the same table, the same transaction);
    the others share the configured ``offsets`` store."""
    stores: dict[str, OffsetStore] = {}
    for sink in sinks:
        if sink.commits_offsets:
            if not isinstance(sink, OffsetCommittingSink):
                raise TypeError(f"{type(sink).__qualname__} commits offsets but has no store")
            stores[sink.name] = sink.offset_store(clock)
        else:
            stores[sink.name] = shared
    return stores


def assemble(
    *,
    settings: Settings,
    clock: Clock,
    masking: MaskingPolicy,
    metrics: Metrics,
    source: ChangeSource,
    schemas: SchemaSource,
    sinks: list[Sink],
    offsets: OffsetStore,
    dead_letters: DeadLetterQueue,
    history: SchemaHistory,
    snapshot_source: SnapshotSource,
) -> Components:
    progress = {sink.name: DestinationProgress(sink.name) for sink in sinks}
    stores = destination_offsets(sinks, offsets, clock)
    exclusive = [ExclusiveSink(sink) for sink in sinks]
    destinations = tuple(
        Destination(CountingSink(shared, metrics), stores[sink.name])
        for sink, shared in zip(sinks, exclusive, strict=True)
    )
    evolution = SchemaEvolution(history, retry_after_s=settings.pipeline.permanent_retry_s)
    replicate = ReplicateBatch(
        source=CountingSource(source, metrics),
        schemas=schemas,
        destinations=destinations,
        dead_letters=CountingDeadLetters(dead_letters, metrics),
        clock=clock,
        masking=masking,
        history=history,
        unknown_tables=settings.pipeline.unknown_tables,
        unknown_tables_kept=settings.pipeline.unknown_tables_kept,
        paused_table_retry_s=settings.pipeline.permanent_retry_s,
        evolution=evolution,
        shared_read_fresh_s=max(0.1, settings.pipeline.max_batch_delay_ms / 1000),
    )
    snapshot = Snapshot(
        source=snapshot_source,
        destinations=[Destination(sink, stores[sink.name]) for sink in exclusive],
        dead_letters=CountingDeadLetters(dead_letters, metrics),
        clock=clock,
        masking=masking,
        evolution=evolution,
        partition_id=settings.source.partition_id,
        tuning=tuning(settings),
    )
    snapshots = SnapshotJobs(snapshot=snapshot, schemas=schemas, settings=settings, metrics=metrics)
    return Components(
        settings=settings,
        clock=clock,
        metrics=metrics,
        source=source,
        schemas=schemas,
        sinks=tuple(sinks),
        offsets=offsets,
        dead_letters=dead_letters,
        destinations=destinations,
        progress=progress,
        replicate=replicate,
        snapshots=snapshots,
    )
