"""Where a Cassandra table lands in PostgreSQL: schema and table names from templates."""

from __future__ import annotations

import attrs

from cdc_adapters.postgres.identifiers import MAX_IDENTIFIER_BYTES

__all__ = ["Naming"]


def _template(instance: Naming, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        value.format(keyspace="k", table="t")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"{attribute.name} {value!r} may use only {{keyspace}} and {{table}}"
        ) from exc


@attrs.frozen(slots=True)
class Naming:
    """``schema`` and ``table`` are templates over ``{keyspace}`` and ``{table}``
    (default: schema = keyspace, table = table). ``metadata_schema`` holds the
    pipeline's own tables (``cdc_offsets``, ``cdc_dead_letters``)."""

    schema: str = attrs.field(default="{keyspace}", validator=_template)
    table: str = attrs.field(default="{table}", validator=_template)
    metadata_schema: str = "public"

    def schema_for(self, keyspace: str, table: str) -> str:
        return _fit(self.schema.format(keyspace=keyspace, table=table))

    def table_for(self, keyspace: str, table: str) -> str:
        return _fit(self.table.format(keyspace=keyspace, table=table))


def _fit(name: str) -> str:
    if not name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{name!r} is not a usable PostgreSQL name (1..63 bytes)")
    return name
