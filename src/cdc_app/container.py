"""The composition root: every port built from validated settings, in one graph.

Each adapter is a ``Resource`` whose shutdown awaits its ``aclose``, so
``shutdown_resources`` releases every connection and file in one place. Tests give the
container their settings and override the providers with in-memory adapters. Commands
that need a few adapters only (``dlq list``) open just those with :func:`opened`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeVar

from dependency_injector import containers, providers

from cdc_adapters.local import SystemClock
from cdc_app import factories
from cdc_app.components import Components, assemble
from cdc_app.masking_rules import masking_policy
from cdc_app.metrics import Metrics
from cdc_app.settings import Settings
from cdc_domain.errors import TransientError
from cdc_domain.ports import (
    ChangeSource,
    Clock,
    DeadLetterQueue,
    OffsetStore,
    ReadinessChecked,
    SchemaHistory,
    SchemaSource,
    Sink,
    SnapshotSource,
)

__all__ = ["Container", "Opened", "opened", "running"]


class _Closable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=_Closable)


@contextlib.asynccontextmanager
async def _closing(adapter: C) -> AsyncIterator[C]:
    try:
        yield adapter
    finally:
        await adapter.aclose()


async def _schemas(settings: Settings) -> AsyncIterator[SchemaSource]:
    async with _closing(factories.schema_source(settings)) as adapter:
        yield adapter


async def _source(settings: Settings, schemas: SchemaSource) -> AsyncIterator[ChangeSource]:
    async with _closing(factories.change_source(settings, schemas)) as adapter:
        yield adapter


async def _snapshot_source(
    settings: Settings, schemas: SchemaSource
) -> AsyncIterator[SnapshotSource]:
    async with _closing(factories.snapshot_source(settings, schemas)) as adapter:
        yield adapter


async def _offsets(settings: Settings, clock: Clock) -> AsyncIterator[OffsetStore]:
    async with _closing(factories.offset_store(settings, clock)) as adapter:
        yield adapter


async def _dead_letters(settings: Settings) -> AsyncIterator[DeadLetterQueue]:
    async with _closing(factories.dead_letter_queue(settings)) as adapter:
        yield adapter


async def _history(settings: Settings) -> AsyncIterator[SchemaHistory]:
    async with _closing(factories.schema_history(settings)) as adapter:
        yield adapter


async def _sinks(settings: Settings) -> AsyncIterator[list[Sink]]:
    """All the sinks, closed together; one that fails to open closes those before it."""
    async with contextlib.AsyncExitStack() as stack:
        sinks = []
        for destination in settings.destinations:
            opened = _closing(factories.sink(destination, settings))
            sink = await stack.enter_async_context(opened)
            await _prepare(sink)
            sinks.append(sink)
        yield sinks


async def _prepare(sink: Sink) -> None:
    """Checks a sink makes before the pipeline trusts it (TimescaleDB: the extension is
    there, or plain tables were allowed), so a misconfigured destination stops start-up
    with its reason instead of failing every batch."""
    if not isinstance(sink, ReadinessChecked):
        return
    try:
        await sink.check_ready()
    except TransientError:
        # Unreachable now is not misconfigured: the destination is reported down and
        # retried like any other, rather than keeping the whole pipeline from starting.
        return


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    masking = providers.Singleton(masking_policy, settings.provided.masking)

    schemas = providers.Resource(_schemas, settings)
    source = providers.Resource(_source, settings, schemas)
    snapshot_source = providers.Resource(_snapshot_source, settings, schemas)
    offsets = providers.Resource(_offsets, settings, clock)
    dead_letters = providers.Resource(_dead_letters, settings)
    history = providers.Resource(_history, settings)
    sinks = providers.Resource(_sinks, settings)

    metrics = providers.Singleton(Metrics)

    components = providers.Factory(
        assemble,
        settings=settings,
        clock=clock,
        masking=masking,
        metrics=metrics,
        source=source,
        schemas=schemas,
        sinks=sinks,
        offsets=offsets,
        dead_letters=dead_letters,
        history=history,
        snapshot_source=snapshot_source,
    )


@contextlib.asynccontextmanager
async def running(container: Container) -> AsyncIterator[Components]:
    """Open every resource, hand out the assembled pipeline, and close them all on the
    way out."""
    try:
        await _settled(container.init_resources())
        yield await _settled(container.components())
    finally:
        await _settled(container.shutdown_resources())


class Opened:
    """The container's adapters, each opened when first asked for (with what it needs),
    so a command that reads the dead letter queue connects to nothing else."""

    def __init__(self, container: Container) -> None:
        self._container = container

    async def source(self) -> ChangeSource:
        source = await _settled(self._container.source())
        assert isinstance(source, ChangeSource)
        return source

    async def schemas(self) -> SchemaSource:
        schemas = await _settled(self._container.schemas())
        assert isinstance(schemas, SchemaSource)
        return schemas

    async def sinks(self) -> list[Sink]:
        sinks = await _settled(self._container.sinks())
        assert all(isinstance(sink, Sink) for sink in sinks)
        return list(sinks)

    async def offsets(self) -> OffsetStore:
        offsets = await _settled(self._container.offsets())
        assert isinstance(offsets, OffsetStore)
        return offsets

    async def dead_letters(self) -> DeadLetterQueue:
        queue = await _settled(self._container.dead_letters())
        assert isinstance(queue, DeadLetterQueue)
        return queue

    async def history(self) -> SchemaHistory:
        history = await _settled(self._container.history())
        assert isinstance(history, SchemaHistory)
        return history

    def clock(self) -> Clock:
        clock = self._container.clock()
        assert isinstance(clock, Clock)
        return clock


@contextlib.asynccontextmanager
async def opened(container: Container) -> AsyncIterator[Opened]:
    """Adapters opened as they are asked for, all closed on the way out."""
    try:
        yield Opened(container)
    finally:
        await _settled(container.shutdown_resources())


async def _settled(value: Any) -> Any:
    """dependency-injector returns an awaitable only when some provider in play is
    async, which overriding resources with plain objects changes."""
    return await value if inspect.isawaitable(value) else value
