"""A container wired with in-memory adapters, as the app tests run the pipeline.

Providers are overridden with real in-memory adapters, never patched, so the code
under test is the container's own assembly.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Mapping

import structlog
from dependency_injector import providers

from cdc_adapters.memory import (
    ManualClock,
    MemoryChangeSource,
    MemoryDeadLetterQueue,
    MemoryOffsetStore,
    MemorySchemaHistory,
    MemorySchemaSource,
    MemorySink,
    MemorySnapshotSource,
)
from cdc_app.components import Components
from cdc_app.config import settings_from
from cdc_app.container import Container
from cdc_app.runner import Runner
from cdc_app.settings import Settings
from cdc_domain.ports import Sink
from tests.factories import table

CUSTOMERS = table("customers", regular={"name": "text", "email": "text"})
LOG = structlog.get_logger("test")


def memory_settings(**sections: object) -> Settings:
    document = {
        "source": {"type": "memory", "partition_id": "node1"},
        "destinations": [{"name": "mirror", "type": "memory"}],
        "offsets": {"type": "memory"},
        "dead_letters": {"type": "memory"},
        "schema_history": {"type": "memory"},
        "health": {"port": None},
        **sections,
    }
    return settings_from(document, {})


class MemoryWiring:
    """The container and the in-memory adapters it was given."""

    def __init__(
        self,
        sinks: Iterable[Sink] = (),
        settings: Settings | None = None,
        source: MemoryChangeSource | None = None,
        **sections: object,
    ) -> None:
        self.sinks = list(sinks) or [MemorySink("mirror")]
        names = [{"name": sink.name, "type": "memory"} for sink in self.sinks]
        self.settings = settings or memory_settings(destinations=names, **sections)
        self.clock = ManualClock()
        self.source = source or MemoryChangeSource("node1")
        self.schemas = MemorySchemaSource([CUSTOMERS])
        self.offsets = MemoryOffsetStore(self.clock)
        self.dead_letters = MemoryDeadLetterQueue()
        self.snapshot_source = MemorySnapshotSource()
        self.container = Container(settings=self.settings)
        for provider, adapter in (
            (self.container.clock, self.clock),
            (self.container.source, self.source),
            (self.container.schemas, self.schemas),
            (self.container.sinks, self.sinks),
            (self.container.offsets, self.offsets),
            (self.container.dead_letters, self.dead_letters),
            (self.container.history, MemorySchemaHistory()),
            (self.container.snapshot_source, self.snapshot_source),
        ):
            provider.override(providers.Object(adapter))

    def runner(
        self, components: Components, holds: Mapping[str, asyncio.Event] | None = None
    ) -> Runner:
        return Runner(
            replicate=components.replicate,
            destinations=components.destinations,
            progress=components.progress,
            metrics=components.metrics,
            pipeline=self.settings.pipeline,
            log=LOG,
            holds=holds,
        )


def written(sink: MemorySink) -> list[int]:
    """The keys of every event ``sink`` was given, in order."""
    return [e.partition_key["id"] for batch in sink.batches for e in batch.events]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
