import pytest

from cdc_domain.cql_types import NATIVE_TYPES, parse_cql_type
from cdc_domain.destinations import DestinationKind
from cdc_domain.schema import resolve_udts
from cdc_domain.type_mapping import NATIVE_TYPES as MAPPING
from cdc_domain.type_mapping import MappedType, SchemaMapper, Unsupported

DATABASES = [DestinationKind.POSTGRES, DestinationKind.CLICKHOUSE, DestinationKind.TIMESCALEDB]
mapper = SchemaMapper()


def test_the_table_covers_every_native_type():
    assert set(MAPPING) == set(NATIVE_TYPES)


@pytest.mark.parametrize("destination", list(DestinationKind))
@pytest.mark.parametrize("name", sorted(NATIVE_TYPES))
def test_every_native_type_maps_or_is_explicitly_unsupported(name, destination):
    result = mapper.map(parse_cql_type(name), destination)
    assert isinstance(result, MappedType | Unsupported)
    if isinstance(result, Unsupported):
        assert result.reason


@pytest.mark.parametrize(
    ("cql", "postgres", "clickhouse"),
    [
        ("int", "integer", "Int32"),
        ("bigint", "bigint", "Int64"),
        ("varint", "numeric", "String"),
        ("decimal", "numeric", "String"),
        ("timestamp", "timestamptz", "DateTime64(3, 'UTC')"),
        ("uuid", "uuid", "UUID"),
        ("blob", "bytea", "String"),
        ("list<int>", "integer[]", "Array(Int32)"),
        ("set<text>", "text[]", "Array(String)"),
        ("frozen<list<frozen<list<int>>>>", "jsonb", "Array(Array(Int32))"),
        ("map<text, int>", "jsonb", "Map(String, Int32)"),
        ("tuple<int, text>", "jsonb", "Tuple(Nullable(Int32), Nullable(String))"),
        ("vector<float, 3>", "real[]", "Array(Float32)"),
    ],
)
def test_known_mappings(cql, postgres, clickhouse):
    cql_type = parse_cql_type(cql)
    assert mapper.map(cql_type, DestinationKind.POSTGRES) == MappedType(postgres)
    assert mapper.map(cql_type, DestinationKind.TIMESCALEDB) == MappedType(postgres)
    assert mapper.map(cql_type, DestinationKind.CLICKHOUSE) == MappedType(clickhouse)


def test_counter_is_unsupported_in_mirrors_but_kept_in_history():
    counter = parse_cql_type("counter")
    assert isinstance(mapper.map(counter, DestinationKind.POSTGRES), Unsupported)
    assert isinstance(mapper.map(counter, DestinationKind.CLICKHOUSE), Unsupported)
    assert mapper.map(counter, DestinationKind.TIMESCALEDB) == MappedType("bigint")


def test_clickhouse_cannot_key_a_map_by_a_collection():
    result = mapper.map(parse_cql_type("map<frozen<list<int>>, int>"), DestinationKind.CLICKHOUSE)
    assert isinstance(result, Unsupported)
    assert "Map keys" in result.reason


def test_udts_map_to_json_once_resolved_and_are_unsupported_before():
    unresolved = parse_cql_type("frozen<address>", "ks")
    for destination in DATABASES:
        assert isinstance(mapper.map(unresolved, destination), Unsupported)
    resolved = resolve_udts(unresolved, lambda ks, name: [("street", parse_cql_type("text"))])
    assert mapper.map(resolved, DestinationKind.POSTGRES) == MappedType("jsonb")
    assert mapper.map(resolved, DestinationKind.CLICKHOUSE) == MappedType("String")


def test_custom_types_are_unsupported_everywhere_but_lossless_sinks():
    custom = parse_cql_type("'org.apache.cassandra.db.marshal.DynamicCompositeType'")
    for destination in DATABASES:
        assert isinstance(mapper.map(custom, destination), Unsupported)
    assert isinstance(mapper.map(custom, DestinationKind.FILE), MappedType)


def test_lossless_destinations_take_every_type():
    for text in ("counter", "map<frozen<list<int>>, int>", "tuple<int, text>"):
        assert mapper.is_supported(parse_cql_type(text), DestinationKind.FILE)
        assert mapper.is_supported(parse_cql_type(text), DestinationKind.MEMORY)
