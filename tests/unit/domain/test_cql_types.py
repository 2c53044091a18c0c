import pytest

from cdc_domain.cql_types import NATIVE_TYPES, CqlType, CqlTypeError, parse_cql_type


@pytest.mark.parametrize("name", sorted(NATIVE_TYPES))
def test_every_native_type_parses_to_itself(name):
    parsed = parse_cql_type(name)
    assert parsed == CqlType(name)
    assert parsed.cql() == name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("varchar", "text"),
        ("TEXT", "text"),
        ("list<int>", "list<int>"),
        ("set<text>", "set<text>"),
        ("map<text, int>", "map<text, int>"),
        ("frozen<list<int>>", "frozen<list<int>>"),
        ("frozen<map<text,frozen<set<uuid>>>>", "frozen<map<text, frozen<set<uuid>>>>"),
        ("list<frozen<map<int, text>>>", "list<frozen<map<int, text>>>"),
        ("tuple<int, text>", "frozen<tuple<int, text>>"),
        ("frozen<tuple<int, frozen<list<text>>>>", "frozen<tuple<int, frozen<list<text>>>>"),
        ("vector<float, 3>", "vector<float, 3>"),
        ("address", "address"),
        ("frozen<address>", "frozen<address>"),
        ('"MixedCase"', '"MixedCase"'),
        (
            "'org.apache.cassandra.db.marshal.BytesType'",
            "'org.apache.cassandra.db.marshal.BytesType'",
        ),
    ],
)
def test_composite_types_parse_and_print_back(text, expected):
    assert parse_cql_type(text).cql() == expected


def test_frozen_marks_the_node_not_its_children():
    parsed = parse_cql_type("frozen<list<frozen<set<int>>>>")
    assert parsed.frozen
    assert not parsed.is_multicell
    assert parsed.params[0].frozen


def test_non_frozen_collections_and_udts_are_multicell():
    assert parse_cql_type("map<int, text>").is_multicell
    assert parse_cql_type("address", "ks").is_multicell
    assert not parse_cql_type("frozen<address>", "ks").is_multicell
    assert not parse_cql_type("tuple<int>").is_multicell


def test_udt_keeps_its_keyspace_and_is_unresolved_until_fields_are_known():
    parsed = parse_cql_type("address", keyspace="shop")
    assert parsed.is_udt
    assert (parsed.udt_keyspace, parsed.udt_name) == ("shop", "address")
    assert not parsed.is_resolved
    assert not parse_cql_type("list<frozen<address>>", "shop").is_resolved


def test_vector_has_dimension_and_fixed_length():
    parsed = parse_cql_type("vector<float, 4>")
    assert parsed.dimension == 4
    assert parsed.fixed_length == 16
    assert parse_cql_type("vector<text, 2>").fixed_length is None


@pytest.mark.parametrize(
    ("name", "length"),
    [("int", 4), ("bigint", 8), ("uuid", 16), ("timestamp", 8), ("text", None), ("smallint", None)],
)
def test_fixed_lengths_follow_cassandra(name, length):
    assert parse_cql_type(name).fixed_length == length


def test_counter_and_duration_are_native():
    assert parse_cql_type("counter").is_native
    assert parse_cql_type("duration").is_native


@pytest.mark.parametrize(
    "text",
    [
        "",
        "list<>",
        "list<int",
        "map<int>",
        "list<int, text>",
        "vector<float>",
        "vector<float, 0>",
        "vector<float, x>",
        "int>",
        "map<int, text> extra",
        "list<int>>",
        "int$",
    ],
)
def test_malformed_types_raise_a_typed_error(text):
    with pytest.raises(CqlTypeError):
        parse_cql_type(text)
