"""The in-memory source adapters against the change and schema source contracts."""

import itertools
import uuid

import pytest

from cdc_adapters.memory import MemoryChangeSource, MemorySchemaSource
from cdc_domain.cql_types import parse_cql_type
from cdc_domain.events import SourcePosition
from cdc_domain.schema import ColumnDefinition, ColumnKind, TableSchema
from tests.contract.change_source_contract import ChangeSourceContract
from tests.contract.schema_source_contract import SchemaSourceContract
from tests.factories import event


class TestMemoryChangeSource(ChangeSourceContract):
    @pytest.fixture
    def change_source(self):
        return MemoryChangeSource("node1")

    @pytest.fixture
    def produce(self, change_source):
        offsets = itertools.count(1)

        async def produce(count):
            for _ in range(count):
                change_source.append(event(key=1, position=SourcePosition(1, next(offsets) * 10)))

        return produce

    @pytest.fixture
    def produce_freeable(self, produce):
        async def produce_freeable():
            await produce(6)

        return produce_freeable


def _schema_from_cql(keyspace, table, columns_cql):
    """A tiny reader of the contract's column lists, so the memory source can take them."""
    body, _, key = columns_cql.partition("PRIMARY KEY (")
    parts = [p.strip() for p in body.split(",") if p.strip()]
    primary = [k.strip() for k in key.rstrip(") ").split(",")] if key else []
    columns = []
    for part in parts:
        words = part.split()
        name, cql = words[0], words[1]
        if "PRIMARY" in words:
            primary = [name]
        columns.append((name, cql))
    result = []
    for name, cql in columns:
        if primary and name == primary[0]:
            kind, position = ColumnKind.PARTITION_KEY, 0
        elif name in primary:
            kind, position = ColumnKind.CLUSTERING, primary.index(name) - 1
        else:
            kind, position = ColumnKind.REGULAR, -1
        result.append(ColumnDefinition(name, parse_cql_type(cql), kind, position))
    return TableSchema(
        keyspace, table, uuid.uuid5(uuid.NAMESPACE_URL, f"{keyspace}.{table}"), tuple(result)
    )


class TestMemorySchemaSource(SchemaSourceContract):
    @pytest.fixture
    def schema_source(self):
        return MemorySchemaSource()

    @pytest.fixture
    def keyspace(self):
        return "contract"

    @pytest.fixture
    def define(self, schema_source):
        async def define(keyspace, table, columns_cql):
            schema_source.put(_schema_from_cql(keyspace, table, columns_cql))

        return define
