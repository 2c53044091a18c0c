from __future__ import annotations

import pytest
import yaml

from cdc_adapters.memory import ManualClock
from cdc_app import availability, factories
from cdc_app.availability import AdapterUnavailableError, check_available
from cdc_app.config import ConfigError, load_settings, render_settings, settings_from
from cdc_app.masking_rules import masking_policy
from cdc_app.settings import (
    TAGGED,
    JsonlDestination,
    LogFormat,
    MaskingSettings,
    MemoryDestination,
    MemorySource,
    PostgresSettings,
    Settings,
    SqliteOffsets,
    mask_url,
)
from cdc_domain.masking import MaskAction
from cdc_domain.ports import (
    ChangeSource,
    DeadLetterQueue,
    OffsetStore,
    SchemaHistory,
    SchemaSource,
    Sink,
    SnapshotSource,
)

BASE = {"source": {"type": "memory"}, "destinations": [{"name": "mirror", "type": "memory"}]}


def settings(environ: dict[str, str] | None = None, **sections: object) -> Settings:
    return settings_from({**BASE, **sections}, environ or {})


def problems(environ: dict[str, str] | None = None, **sections: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        settings(environ, **sections)
    return caught.value.problems


def test_a_minimal_file_takes_the_defaults(write_config):
    path = write_config(
        """
        source: {type: memory}
        destinations:
          - {name: audit, type: jsonl, path: ./changes.jsonl}
        """
    )

    loaded = load_settings(path, environ={})

    assert loaded.source == MemorySource()
    assert loaded.destinations == (JsonlDestination(name="audit", path="./changes.jsonl"),)
    assert loaded.offsets == SqliteOffsets()
    assert loaded.pipeline.max_batch_events == 1000
    assert loaded.logging.format is LogFormat.CONSOLE
    assert loaded.postgres is None


def test_values_interpolate_variables_with_defaults():
    loaded = settings(
        {"BATCH": "50", "NODE": "n7"},
        source={"type": "memory", "partition_id": "${NODE}-${ZONE:eu}"},
        pipeline={"max_batch_events": "${BATCH}", "max_batch_delay_ms": "${DELAY:25}"},
    )

    assert loaded.source.partition_id == "n7-eu"
    assert loaded.pipeline.max_batch_events == 50
    assert loaded.pipeline.max_batch_delay_ms == 25


def test_an_unset_variable_without_default_names_its_key():
    assert problems(postgres={"dsn": "postgresql://u:${PGPW}@h/db"}) == (
        "postgres.dsn: environment variable PGPW is not set (write ${PGPW:} for a default)",
    )


def test_database_variables_override_their_own_section_only():
    loaded = settings(
        {
            "CDC_POSTGRES_DSN": "postgresql://env@h/db",
            "CDC_POSTGRES_PORT": "55432",  # the test services' variable, not a setting
        },
        postgres={"dsn": "postgresql://file@h/db"},
    )

    assert loaded.postgres == PostgresSettings(dsn="postgresql://env@h/db")
    assert loaded.clickhouse is None
    assert loaded.timescaledb is None


def test_a_database_section_may_come_from_variables_alone():
    loaded = settings(
        {"CDC_CASSANDRA_HOSTS": "a:9042, b:9042", "CDC_CASSANDRA_CDC_RAW_DIR": "/cdc"}
    )

    assert loaded.cassandra is not None
    assert loaded.cassandra.hosts == ("a:9042", "b:9042")
    assert loaded.cassandra.cdc_raw_dir == "/cdc"


def test_a_section_from_variables_is_still_validated():
    assert problems({"CDC_CLICKHOUSE_USER": "bob"}) == ("clickhouse.url: required key missing",)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            {"pipeline": {"max_batch_event": 5}},
            "pipeline: unknown key 'max_batch_event' "
            "(expected one of: max_batch_events, max_batch_delay_ms, retry_initial_ms",
        ),
        ({"sink": {}}, "unknown key 'sink' (expected one of: source, destinations, offsets"),
        (
            {"offsets": {"type": "memory", "path": "x"}},
            "offsets: unknown key 'path' (no other keys are allowed)",
        ),
        (
            {"destinations": [{"name": "a", "type": "memory", "path": "x"}]},
            "destinations[0]: unknown key 'path' (expected one of: name)",
        ),
    ],
)
def test_unknown_keys_are_errors(sections, expected):
    assert problems(**sections)[0].startswith(expected)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            {"pipeline": {"max_batch_events": "lots"}},
            "pipeline.max_batch_events: expected an integer",
        ),
        ({"pipeline": {"max_batch_events": 1.5}}, "pipeline.max_batch_events: expected an integer"),
        (
            {"pipeline": {"max_batch_events": 0}},
            "pipeline: max_batch_events must be at least 1, got 0",
        ),
        (
            {
                "destinations": [
                    {"name": "a", "type": "memory"},
                    {"name": "b", "type": "jsonl", "path": ["x"]},
                ]
            },
            "destinations[1].path: expected a string",
        ),
        (
            {"cassandra": {"hosts": "a:9042", "cdc_raw_dir": "/c"}},
            "cassandra.hosts: expected a list",
        ),
        ({"logging": {"format": "xml"}}, "logging.format: expected one of: console, json"),
        ({"source": "memory"}, "source: expected a mapping"),
        ({"source": {"partition_id": "n1"}}, "source.type: required key missing"),
        (
            {"destinations": [{"type": "jsonl", "path": "x"}]},
            "destinations[0].name: required key missing",
        ),
    ],
)
def test_a_wrong_value_names_its_path(sections, expected):
    assert problems(**sections) == (expected,)


def test_an_unknown_type_lists_the_known_ones():
    assert problems(destinations=[{"name": "a", "type": "postgress"}]) == (
        "destinations[0].type: unknown destination type 'postgress' "
        "(expected one of: jsonl, memory, postgres, clickhouse, timescaledb)",
    )


DATABASE_SECTIONS = {
    "cassandra": {"cdc_raw_dir": "/var/lib/cassandra/cdc_raw"},
    "postgres": {"dsn": "postgresql://h/db"},
    "clickhouse": {"url": "http://h:8123"},
    "timescaledb": {"dsn": "postgresql://h/ts"},
}
NEEDS = {
    "jsonl": {"path": "x.jsonl"},
    "cassandra": {"partition_id": "node1"},
}


@pytest.mark.parametrize(
    ("section", "member"),
    [
        (section, member)
        for section, label in (
            ("destinations", "destination"),
            ("offsets", "offsets"),
            ("dead_letters", "dead letter"),
            ("schema_history", "schema history"),
            ("source", "source"),
        )
        for member in TAGGED[label]
    ],
)
async def test_every_type_the_settings_accept_is_built_by_its_factory(section, member):
    entry = {"type": member.TYPE, **NEEDS.get(member.TYPE, {})}
    if section == "destinations":
        entry["name"] = "d"
    loaded = settings(
        **DATABASE_SECTIONS, **{section: [entry] if section == "destinations" else entry}
    )
    clock = ManualClock()
    schemas = factories.schema_source(loaded)
    built = {
        "destinations": lambda: factories.sink(loaded.destinations[0], loaded),
        "offsets": lambda: factories.offset_store(loaded, clock),
        "dead_letters": lambda: factories.dead_letter_queue(loaded),
        "schema_history": lambda: factories.schema_history(loaded),
        "source": lambda: factories.change_source(loaded, schemas),
    }[section]()
    port = {
        "destinations": Sink,
        "offsets": OffsetStore,
        "dead_letters": DeadLetterQueue,
        "schema_history": SchemaHistory,
        "source": ChangeSource,
    }[section]
    assert isinstance(built, port)
    assert isinstance(schemas, SchemaSource)
    await built.aclose()
    if section == "source":
        snapshots = factories.snapshot_source(loaded, schemas)
        assert isinstance(snapshots, SnapshotSource)
        await snapshots.aclose()
    await schemas.aclose()


@pytest.mark.parametrize(
    "destination", [{"type": "postgres"}, {"type": "timescaledb", "mode": "mirror"}]
)
async def test_a_mirror_purges_expired_rows_after_the_seconds_configured(destination):
    entry = {"name": "m", **destination}
    assert problems(**DATABASE_SECTIONS, destinations=[{**entry, "purge_expired_after": 0}]) == (
        "destinations[0]: purge_expired_after must be at least 1, got 0",
    )
    loaded = settings(**DATABASE_SECTIONS, destinations=[{**entry, "purge_expired_after": 86400}])
    sink = factories.sink(loaded.destinations[0], loaded)
    assert sink._purge_after == 86400  # type: ignore[attr-defined]
    await sink.aclose()


@pytest.mark.parametrize(
    ("section", "destination"),
    [
        ("postgres", {"type": "postgres"}),
        ("timescaledb", {"type": "timescaledb"}),
        ("timescaledb", {"type": "timescaledb", "mode": "mirror"}),
    ],
)
async def test_a_database_section_sizes_its_destinations_pools(section, destination):
    dsn = {"dsn": "postgresql://h/db"}
    variable = f"CDC_{section.upper()}_POOL_IDLE_S"
    loaded = settings(
        {variable: "0.25"},
        **{section: {**dsn, "pool_max_size": 2, "connect_timeout_s": 90}},
        destinations=[{"name": "d", **destination}],
    )
    sink = factories.sink(loaded.destinations[0], loaded)
    pool = sink._pool  # type: ignore[attr-defined]
    # Idle connections closed after a quarter of a second, none kept open meanwhile.
    assert (pool._sizes, pool._idle_s, pool._connect_timeout) == ((0, 2), 0.25, 90.0)
    await sink.aclose()

    kept = settings(**{section: dsn}, destinations=[{"name": "d", **destination}])
    sink = factories.sink(kept.destinations[0], kept)
    pool = sink._pool  # type: ignore[attr-defined]
    assert pool._sizes[0] == 1
    assert pool._idle_s is None
    await sink.aclose()

    assert problems(**{section: {**dsn, "pool_idle_s": 0}}) == (
        f"{section}: pool_idle_s must be above 0, got 0.0",
    )


def test_snapshot_settings_and_booleans_load_from_yaml_and_variables():
    loaded = settings(
        {"ALL": "true"},
        source={"type": "memory", "snapshot": "when_needed"},
        snapshot={"all_ranges": "${ALL}", "consistency": "ONE", "concurrency": 2},
        timescaledb={"dsn": "postgresql://h/ts"},
        destinations=[{"name": "ts", "type": "timescaledb", "fallback_to_plain_tables": True}],
    )
    assert loaded.source.snapshot.value == "when_needed"
    assert loaded.snapshot.all_ranges is True
    assert loaded.snapshot.consistency.value == "ONE"
    assert loaded.destinations[0].fallback_to_plain_tables is True
    assert problems(snapshot={"all_ranges": 3}) == ("snapshot.all_ranges: expected true or false",)
    assert problems(source={"type": "memory", "snapshot": "always"}) == (
        "source.snapshot: expected one of: never, initial, when_needed",
    )
    assert problems(snapshot={"consistency": "SERIAL"})[0].startswith(
        "snapshot.consistency: expected one of: ONE"
    )


def test_destination_names_are_unique_and_required():
    assert problems(destinations=[]) == ("destinations: at least one destination is required",)
    twice = [{"name": "a", "type": "memory"}, {"name": "a", "type": "memory"}]
    assert problems(destinations=twice) == ("destinations[1].name: duplicate destination name 'a'",)


def test_a_database_type_needs_its_section():
    assert problems(destinations=[{"name": "a", "type": "clickhouse"}]) == (
        "destinations[0].type: clickhouse needs the 'clickhouse' section "
        "(or CDC_CLICKHOUSE_* variables)",
    )
    assert problems(offsets={"type": "postgres"}) == (
        "offsets.type: postgres needs the 'postgres' section (or CDC_POSTGRES_* variables)",
    )


def test_secrets_are_masked_when_printed():
    loaded = settings(
        cassandra={"cdc_raw_dir": "/c", "username": "cdc", "password": "cass-pw"},
        postgres={"dsn": "postgresql://cdc:pg-pw@db:5432/warehouse"},
        clickhouse={"url": "http://ch:8123/?password=ch-url-pw", "password": "ch-pw"},
        timescaledb={"dsn": "host=ts user=cdc password='ts pw'"},
        masking={"hmac_key": "hmac-secret"},
    )

    printed = render_settings(loaded)

    for secret in ("cass-pw", "pg-pw", "ch-url-pw", "ch-pw", "ts pw", "hmac-secret"):
        assert secret not in printed
        assert secret not in repr(loaded)
    document = yaml.safe_load(printed)
    assert document["postgres"]["dsn"] == "postgresql://cdc:********@db:5432/warehouse"
    assert document["cassandra"]["username"] == "cdc"
    assert document["destinations"] == [{"type": "memory", "name": "mirror"}]
    assert settings_from(document, {}).destinations == (MemoryDestination(name="mirror"),)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:********@h/db"),
        ("postgresql://h/db?password=p&x=1", "postgresql://h/db?password=********&x=1"),
        ("host=h password=p user=u", "host=h password=******** user=u"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_urls_keep_all_but_their_password(url, masked):
    assert mask_url(url) == masked


def test_file_errors_are_one_problem_each(write_config, tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.yaml", {})
    with pytest.raises(ConfigError, match="line 3: duplicate key 'source'"):
        load_settings(write_config("source: {}\ndestinations: []\nsource: {}\n"), {})
    with pytest.raises(ConfigError, match="line 2: "):
        load_settings(write_config("source: {type: memory\ndestinations: [\n"), {})
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_settings(write_config("- a\n"), {})


def test_masking_rules_load_from_their_file(write_config):
    rules = write_config("rules:\n  - {field: loyalty, action: hash}\n", "masking.yaml")

    policy = masking_policy(MaskingSettings(rules_file=str(rules), hmac_key="k"))

    assert policy.classify("shop.customers", "loyalty")[1] is MaskAction.HASH
    with pytest.raises(ConfigError, match=r"^masking.hmac_key is required"):
        masking_policy(MaskingSettings(rules_file=str(rules), hmac_key=""))
    with pytest.raises(ConfigError, match=r"^masking.rules_file: .*no such file"):
        masking_policy(MaskingSettings(rules_file=str(rules) + ".missing"))


def test_an_adapter_whose_driver_is_missing_names_its_extra(monkeypatch):
    monkeypatch.setitem(availability._DRIVERS, "postgres", ("a_driver_not_installed", "postgres"))
    loaded = settings(postgres={"dsn": "postgresql://h/db"})

    with pytest.raises(AdapterUnavailableError) as caught:
        check_available(loaded, "postgres")

    assert str(caught.value) == (
        "postgres needs the 'postgres' extra: pip install 'cassandra-cdc[postgres]'"
    )
