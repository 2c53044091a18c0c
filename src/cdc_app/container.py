"""The composition root: every port built from validated settings, in one graph.

Each adapter is a ``Resource`` whose shutdown awaits its ``aclose``, so
``shutdown_resources`` releases every connection and file in one place. Tests give the
container their settings and override the providers with in-memory adapters. Commands
that need a few adapters only (``dlq list``) open just those with :func:`opened`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
from dependency_injector import containers, providers

from cdc_adapters.local import SystemClock
from cdc_app.components import Components, assemble
from cdc_app.masking_rules import masking_policy
from cdc_app.metrics import Metrics
from cdc_app.registry import (
    CHANGE_SOURCES,
    DEAD_LETTER_QUEUES,
    OFFSET_STORES,
    SCHEMA_HISTORIES,
    SCHEMA_SOURCES,
    SINKS,
    AdapterRef,
    adapter_class,
)
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
)

__all__ = ["Container", "opened", "running"]


@contextlib.asynccontextmanager
async def _opened(
    port: type[Any], table: Mapping[str, AdapterRef], adapter_type: str, kwargs: Mapping[str, Any]
) -> AsyncIterator[Any]:
    """An adapter that is checked against its port, and closed on the way out."""
    adapter = adapter_class(table, adapter_type)(**kwargs)
    if not isinstance(adapter, port):
        raise TypeError(f"{type(adapter).__qualname__} does not implement {port.__name__}")
    try:
        yield adapter
    finally:
        await adapter.aclose()


def _arguments(settings: Settings, entry: Any, **collaborators: Any) -> dict[str, Any]:
    """The constructor arguments the registry promises an adapter (see its docstring)."""
    options = attrs.asdict(entry, recurse=False)
    return {**options, **collaborators, **settings.connection(entry.TYPE)}


async def _source(settings: Settings) -> AsyncIterator[ChangeSource]:
    source = settings.source
    kwargs = _arguments(settings, source)
    async with _opened(ChangeSource, CHANGE_SOURCES, source.TYPE, kwargs) as adapter:
        yield adapter


async def _schemas(settings: Settings) -> AsyncIterator[SchemaSource]:
    source_type = settings.source.TYPE
    kwargs = settings.connection(source_type)
    async with _opened(SchemaSource, SCHEMA_SOURCES, source_type, kwargs) as adapter:
        yield adapter


async def _offsets(settings: Settings, clock: Clock) -> AsyncIterator[OffsetStore]:
    offsets = settings.offsets
    kwargs = _arguments(settings, offsets, clock=clock)
    async with _opened(OffsetStore, OFFSET_STORES, offsets.TYPE, kwargs) as adapter:
        yield adapter


async def _dead_letters(settings: Settings) -> AsyncIterator[DeadLetterQueue]:
    queue = settings.dead_letters
    kwargs = _arguments(settings, queue)
    async with _opened(DeadLetterQueue, DEAD_LETTER_QUEUES, queue.TYPE, kwargs) as adapter:
        yield adapter


async def _history(settings: Settings) -> AsyncIterator[SchemaHistory]:
    history = settings.schema_history
    kwargs = _arguments(settings, history)
    async with _opened(SchemaHistory, SCHEMA_HISTORIES, history.TYPE, kwargs) as adapter:
        yield adapter


async def _sinks(settings: Settings) -> AsyncIterator[list[Sink]]:
    """All the sinks, closed together; one that fails to open closes those before it."""
    async with contextlib.AsyncExitStack() as stack:
        sinks = []
        for destination in settings.destinations:
            opened = _opened(Sink, SINKS, destination.TYPE, _arguments(settings, destination))
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

    source = providers.Resource(_source, settings)
    schemas = providers.Resource(_schemas, settings)
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


@contextlib.asynccontextmanager
async def opened(
    container: Container, *wanted: providers.Provider[Any]
) -> AsyncIterator[tuple[Any, ...]]:
    """What each of ``wanted`` gives, with only the resources they need opened, and
    closed on the way out."""
    try:
        yield tuple([await _settled(provider()) for provider in wanted])
    finally:
        await _settled(container.shutdown_resources())


async def _settled(value: Any) -> Any:
    """dependency-injector returns an awaitable only when some provider in play is
    async, which overriding resources with plain objects changes."""
    return await value if inspect.isawaitable(value) else value
