from cdc_domain.dead_letters import FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.validation import EventValidator
from tests.factories import event, table

stats = table("stats", regular={"hits": "counter", "label": "text"})


def test_supported_columns_are_valid():
    result = EventValidator().validate(
        event(table="stats", columns={"label": "x"}), stats, DestinationKind.POSTGRES
    )
    assert result.valid


def test_unsupported_type_is_schema_incompatible_with_column_details():
    result = EventValidator().validate(
        event(table="stats", counters={"hits": 1}), stats, DestinationKind.POSTGRES
    )
    assert not result.valid
    assert result.reason is FailureReason.SCHEMA_INCOMPATIBLE
    assert result.details["columns"][0]["column"] == "hits"
    assert result.details["columns"][0]["cql_type"] == "counter"
    assert "postgres" in result.message


def test_the_same_event_is_fine_where_the_type_is_supported():
    assert (
        EventValidator()
        .validate(event(table="stats", counters={"hits": 1}), stats, DestinationKind.TIMESCALEDB)
        .valid
    )


def test_a_column_missing_from_the_schema_is_reported():
    result = EventValidator().validate(
        event(table="stats", columns={"ghost": 1}), stats, DestinationKind.POSTGRES
    )
    assert not result.valid
    assert result.problems[0].column == "ghost"


def test_verdicts_are_cached_per_schema_version_and_destination():
    validator = EventValidator()
    validator.validate(event(table="stats"), stats, DestinationKind.POSTGRES)
    validator.validate(event(table="stats"), stats, DestinationKind.POSTGRES)
    validator.validate(event(table="stats"), stats, DestinationKind.CLICKHOUSE)
    assert len(validator._cache) == 2
