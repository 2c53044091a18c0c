"""The domain models' JSON-compatible form, through a private cattrs converter.

Column values are typed ``Any`` on the models; they go through the lossless value
codec (:mod:`cdc_domain.values`), so a ChangeEvent survives JSON and back unchanged.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import attrs
import cattrs

from cdc_domain.cql_types import CqlType, parse_cql_type
from cdc_domain.dead_letters import DeadLetterEvent
from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    CollectionDelta,
    CollectionElement,
)
from cdc_domain.values import value_from_json, value_to_json

__all__ = ["make_converter"]


def _values_to_json(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value_to_json(v) for name, v in values.items()}


def _values_from_json(data: dict[str, Any], _: Any) -> dict[str, Any]:
    return {name: value_from_json(v) for name, v in data.items()}


def _cql_type_to_json(cql_type: CqlType) -> Any:
    if cql_type.is_resolved and not any(t.is_udt for t in cql_type.walk()):
        return cql_type.cql()
    return attrs.asdict(cql_type, recurse=True)


def _cql_type_from_json(data: Any, _: Any) -> CqlType:
    if isinstance(data, str):
        return parse_cql_type(data)
    return _cql_type_tree(data)


def _cql_type_tree(data: dict[str, Any]) -> CqlType:
    fields = dict(data)
    fields["params"] = tuple(_cql_type_tree(p) for p in fields.get("params", ()))
    fields["field_names"] = tuple(fields.get("field_names", ()))
    return CqlType(**fields)


def make_converter() -> cattrs.Converter:
    """A new converter for the domain models; each boundary owns its own instance."""
    converter = cattrs.Converter()
    converter.register_unstructure_hook(dt.datetime, lambda v: v.isoformat())
    converter.register_structure_hook(dt.datetime, lambda v, _: dt.datetime.fromisoformat(v))
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(uuid.UUID, lambda v, _: uuid.UUID(v))
    converter.register_unstructure_hook(bytes, lambda v: value_to_json(v))
    converter.register_structure_hook(bytes, lambda v, _: value_from_json(v))
    converter.register_unstructure_hook(CqlType, _cql_type_to_json)
    converter.register_structure_hook(CqlType, _cql_type_from_json)
    _register_values(converter)
    return converter


def _register_values(converter: cattrs.Converter) -> None:
    """Fields that hold column values (typed Any) go through the value codec.

    Leaf classes first: cattrs generates a class's function with the hooks its field
    types have at that moment.
    """
    value = cattrs.gen.override(unstruct_hook=value_to_json, struct_hook=_any_from_json)
    values = cattrs.gen.override(unstruct_hook=_values_to_json, struct_hook=_values_from_json)
    value_tuple = cattrs.gen.override(
        unstruct_hook=lambda v: [value_to_json(x) for x in v],
        struct_hook=lambda v, _: tuple(value_from_json(x) for x in v),
    )
    _register(converter, CollectionElement, key=value, value=value)
    _register(converter, CollectionDelta, removed=value_tuple)
    _register(converter, ClusteringBound, values=values)
    _register(converter, ChangeEvent, partition_key=values, clustering_key=values, columns=values)
    _register(converter, DeadLetterEvent, schema_details=values)


def _register(converter: cattrs.Converter, cls: type, **overrides: Any) -> None:
    converter.register_unstructure_hook(
        cls, cattrs.gen.make_dict_unstructure_fn(cls, converter, **overrides)
    )
    converter.register_structure_hook(
        cls, cattrs.gen.make_dict_structure_fn(cls, converter, **overrides)
    )


def _any_from_json(data: Any, _: Any) -> Any:
    return value_from_json(data)
