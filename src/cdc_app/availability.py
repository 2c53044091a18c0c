"""Whether this installation can provide the adapters a configuration asks for.

Each database's driver comes with an extra (``pip install 'cassandra-cdc[postgres]'``),
so a build without it still runs with the other databases; asking for a database whose
driver is missing is a configuration error that says what to install, found by
``cdc-app config check`` before anything connects.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

from cdc_app.settings import DATABASES, Settings

__all__ = ["AdapterUnavailableError", "adapters_in_use", "check_available"]

_DISTRIBUTION = "cassandra-cdc"

_DRIVERS = {
    "cassandra": ("cassandra", "cassandra"),
    "postgres": ("asyncpg", "postgres"),
    "timescaledb": ("asyncpg", "postgres"),
    "clickhouse": ("aiochclient", "clickhouse"),
}
"""Adapter type -> (the driver module it imports, the extra that installs it)."""


class AdapterUnavailableError(LookupError):
    """A configured adapter this installation cannot provide."""


def adapters_in_use(settings: Settings) -> Iterator[tuple[str, str]]:
    """Every adapter ``settings`` asks for, as (config path of its type, type)."""
    yield "source.type", settings.source.TYPE
    for index, destination in enumerate(settings.destinations):
        yield f"destinations[{index}].type", destination.TYPE
    yield "offsets.type", settings.offsets.TYPE
    yield "dead_letters.type", settings.dead_letters.TYPE
    yield "schema_history.type", settings.schema_history.TYPE


def check_available(settings: Settings, adapter_type: str) -> None:
    """Raise :class:`AdapterUnavailableError` when ``adapter_type``'s driver is not
    installed or the database section it connects with is missing."""
    module, extra = _DRIVERS.get(adapter_type, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise AdapterUnavailableError(
            f"{adapter_type} needs the '{extra}' extra: pip install '{_DISTRIBUTION}[{extra}]'"
        )
    if adapter_type in DATABASES and getattr(settings, adapter_type) is None:
        prefix = f"CDC_{adapter_type.upper()}_"
        raise AdapterUnavailableError(
            f"{adapter_type} needs the '{adapter_type}' section (or {prefix}* variables)"
        )
