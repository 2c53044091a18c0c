import json

from hypothesis import given, settings

from cdc_domain.cql_types import CqlType
from cdc_domain.dead_letters import DeadLetterEvent
from cdc_domain.events import ChangeEvent
from cdc_domain.offsets import Checkpoint, OffsetRecord
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import SchemaChange, SchemaDiff
from cdc_domain.serialization import make_converter
from cdc_domain.values import value_from_json, value_to_json
from tests import strategies as s

converter = make_converter()


def round_trip(obj, cls):
    return converter.structure(json.loads(json.dumps(converter.unstructure(obj))), cls)


@given(s.values)
def test_every_value_survives_json(value):
    assert value_from_json(json.loads(json.dumps(value_to_json(value)))) == value


@given(s.change_events())
def test_change_events_round_trip(event):
    assert round_trip(event, ChangeEvent) == event


@given(s.cql_types)
def test_cql_types_round_trip(cql_type):
    assert round_trip(cql_type, CqlType) == cql_type


@given(s.table_schemas)
def test_table_schemas_round_trip(schema):
    back = round_trip(schema, TableSchema)
    assert back == schema
    assert back.version == schema.version


@settings(max_examples=50)
@given(s.table_schemas, s.table_schemas)
def test_schema_changes_round_trip(old, new):
    for change in SchemaDiff().keyspaces({("k", "a"): old}, {("k", "a"): new}):
        assert round_trip(change, SchemaChange) == change


@given(s.dead_letters)
def test_dead_letters_round_trip(entry):
    assert round_trip(entry, DeadLetterEvent) == entry


@given(s.checkpoints, s.offset_records)
def test_offsets_round_trip(checkpoint, record):
    assert round_trip(checkpoint, Checkpoint) == checkpoint
    assert round_trip(record, OffsetRecord) == record


def test_plain_values_stay_plain_in_json():
    assert value_to_json({"a": 1, "b": "x", "c": [True, None]}) == {
        "a": 1,
        "b": "x",
        "c": [True, None],
    }


def test_big_integers_are_strings_so_no_reader_loses_precision():
    assert value_to_json(2**53 + 1) == {"$varint": str(2**53 + 1)}
    assert value_to_json(2**53) == 2**53


def test_blobs_are_base64():
    assert value_to_json(b"\x00\xff") == {"$blob": "AP8="}
