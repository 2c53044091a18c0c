"""Everything a running pipeline is made of, as the container assembles it.

The use case gets the counting wrappers (:mod:`cdc_app.instrumented`); health checks
get the adapters themselves, whose ``health`` the wrappers would hide.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from cdc_app.instrumented import CountingDeadLetters, CountingSink, CountingSource
from cdc_app.metrics import Metrics
from cdc_app.progress import DestinationProgress
from cdc_app.settings import Settings
from cdc_domain.masking import MaskingPolicy
from cdc_domain.ports import (
    ChangeSource,
    Clock,
    DeadLetterQueue,
    OffsetStore,
    SchemaHistory,
    SchemaSource,
    Sink,
)
from cdc_domain.replication import Destination, ReplicateBatch

__all__ = ["Components", "assemble"]


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
) -> Components:
    progress = {sink.name: DestinationProgress(sink.name) for sink in sinks}
    destinations = tuple(Destination(CountingSink(sink, metrics), offsets) for sink in sinks)
    replicate = ReplicateBatch(
        source=CountingSource(source, metrics),
        schemas=schemas,
        destinations=destinations,
        dead_letters=CountingDeadLetters(dead_letters, metrics),
        clock=clock,
        masking=masking,
        history=history,
    )
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
    )
