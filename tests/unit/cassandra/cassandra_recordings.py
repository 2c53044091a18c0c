"""Load recorded commit log fixtures (see tests/fixtures/commitlog/record_fixtures.py)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import attrs

from cdc_adapters.cassandra.segment import parse_segment_name, read_cdc_index
from cdc_domain.cql_types import CqlType, parse_cql_type
from cdc_domain.schema import (
    ClusteringOrder,
    ColumnDefinition,
    ColumnKind,
    TableSchema,
    resolve_udts,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "commitlog"


@attrs.frozen
class RecordedSegment:
    path: Path
    segment_id: int
    idx_offset: int
    schemas: dict[uuid.UUID, TableSchema]
    keyspace: str

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()

    def table(self, name: str) -> TableSchema:
        return next(t for t in self.schemas.values() if t.table == name)


def load_schemas(path: Path) -> list[TableSchema]:
    content = json.loads(path.read_text())
    types: dict[tuple[str, str], list[tuple[str, str]]] = {}
    keyspaces = {t["keyspace"] for t in content["tables"]}
    for udt in content["types"]:
        for keyspace in keyspaces:
            types[(keyspace, udt["name"])] = [tuple(f) for f in udt["fields"]]

    def lookup(keyspace: str, name: str) -> list[tuple[str, CqlType]] | None:
        fields = types.get((keyspace, name))
        if fields is None:
            return None
        return [(field, parse_cql_type(text, keyspace)) for field, text in fields]

    schemas = []
    for table in content["tables"]:
        columns = tuple(
            ColumnDefinition(
                name=name,
                type=resolve_udts(parse_cql_type(text, table["keyspace"]), lookup),
                kind=ColumnKind(kind),
                position=position,
                clustering_order=ClusteringOrder(order),
            )
            for name, text, kind, position, order in table["columns"]
        )
        schemas.append(
            TableSchema(
                keyspace=table["keyspace"],
                table=table["table"],
                table_id=uuid.UUID(table["id"]),
                columns=columns,
                cdc=table["cdc"],
            )
        )
    return schemas


def load_recorded(name: str) -> RecordedSegment:
    directory = FIXTURES / name
    path = next(directory.glob("CommitLog-*.log"))
    parsed = parse_segment_name(path.name)
    index = read_cdc_index(path.with_name(path.stem + "_cdc.idx"))
    assert parsed is not None
    assert index is not None
    schemas = load_schemas(directory / "schema.json")
    return RecordedSegment(
        path=path,
        segment_id=parsed[1],
        idx_offset=index.offset,
        schemas={s.table_id: s for s in schemas},
        keyspace=schemas[0].keyspace,
    )
