"""Table schemas as a JSON file: what ``cdc-app schema export`` writes and
``cdc-app commitlog decode --schema`` reads, so segments decode away from the node.

The layout is the domain's own (``cdc_domain.serialization``), wrapped in an object with
a format version so the file can evolve.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from cdc_domain.schema import TableSchema
from cdc_domain.serialization import make_converter

__all__ = ["SchemaFileError", "dump_schemas", "load_schemas"]

_FORMAT = "cassandra-cdc/schemas"
_VERSION = 1


class SchemaFileError(ValueError):
    """A schema file this version cannot read."""


def dump_schemas(schemas: Iterable[TableSchema]) -> str:
    ordered = sorted(schemas, key=lambda s: (s.keyspace, s.table))
    document = {
        "format": _FORMAT,
        "version": _VERSION,
        "tables": make_converter().unstructure(ordered, list[TableSchema]),
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def load_schemas(text: str) -> list[TableSchema]:
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaFileError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise SchemaFileError(f"not a schema file (expected format {_FORMAT!r})")
    if document.get("version") != _VERSION:
        raise SchemaFileError(f"schema file version {document.get('version')!r}, expected 1")
    try:
        tables: list[TableSchema] = make_converter().structure(
            document.get("tables", []), list[TableSchema]
        )
    except Exception as exc:  # cattrs raises ExceptionGroups naming the bad paths
        raise SchemaFileError(f"bad table entry: {exc}") from exc
    return tables
