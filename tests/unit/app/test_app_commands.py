"""The operator commands run in process, against a container wired with test adapters."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from dependency_injector import providers

from cdc_adapters.local import JsonLinesDeadLetterQueue, SqliteOffsetStore
from cdc_adapters.memory import ManualClock, MemoryChangeSource, MemorySchemaSource, MemorySink
from cdc_app import commands
from cdc_app.container import Container, running
from cdc_app.endpoint import health_app, serving
from cdc_app.settings import Settings
from cdc_domain.dead_letters import DeadLetterEvent, DeadLetterStatus, FailureReason
from cdc_domain.events import SourcePosition
from cdc_domain.masking import REDACTED
from cdc_domain.offsets import Checkpoint
from tests.factories import event
from tests.support.waiting import eventually
from tests.unit.app.wiring import CUSTOMERS, MemoryWiring, free_port, memory_settings

NOW = ManualClock().now()


def jsonl_settings(tmp_path: Path, **sections: object) -> Settings:
    return memory_settings(
        destinations=[{"name": "audit", "type": "jsonl", "path": str(tmp_path / "audit.jsonl")}],
        dead_letters={"type": "jsonl", "path": str(tmp_path / "dead.jsonl")},
        offsets={"type": "sqlite", "path": str(tmp_path / "offsets.db")},
        **sections,
    )


def jsonl_container(settings: Settings) -> Container:
    container = Container(settings=settings)
    container.schemas.override(providers.Object(MemorySchemaSource([CUSTOMERS])))
    return container


def letter(reason: FailureReason, key: int, table: str = "customers", **columns: object):
    return DeadLetterEvent.for_event(
        event(table=table, key=key, columns=dict(columns) or {"name": "n"}),
        reason=reason,
        error=f"{reason.value} of {key}",
        failed_at=NOW,
        destination="audit",
    )


async def stored(tmp_path: Path) -> dict[str, DeadLetterEvent]:
    queue = JsonLinesDeadLetterQueue(str(tmp_path / "dead.jsonl"))
    return {e.dlq_id: e for e in await queue.list(include_replayed=True)}


async def replay(settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = await commands.dlq_replay(
        settings, jsonl_container(settings), out, destination=None, reason=None
    )
    return code, out.getvalue()


async def test_replay_redrives_what_it_can_and_a_second_replay_changes_nothing(tmp_path):
    valid = letter(FailureReason.VALIDATION_ERROR, 1)
    redacted = letter(FailureReason.MASKING_ERROR, 2, email=REDACTED)
    unknown = letter(FailureReason.UNKNOWN_TABLE, 3, table="unknown")
    raw = DeadLetterEvent.for_raw(
        b"\x00", reason=FailureReason.DECODE_ERROR, error="bad", failed_at=NOW,
        position=SourcePosition(1, 1),
    )  # fmt: skip
    await JsonLinesDeadLetterQueue(str(tmp_path / "dead.jsonl")).write(
        [valid, redacted, unknown, raw]
    )
    settings = jsonl_settings(tmp_path)

    code, printed = await replay(settings)

    assert code == 1
    assert printed.splitlines()[0] == "replayed 1, failed again 1, skipped 2"
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    delivered = [line for line in lines if line.get("type") != "schema_change"]
    # A masking error holds redactions, never real data: writing it would destroy the row.
    assert [line["partition_key"] for line in delivered] == [{"id": 1}]
    after = await stored(tmp_path)
    assert after[valid.dlq_id].status is DeadLetterStatus.REPLAYED
    assert after[redacted.dlq_id] == redacted
    assert after[unknown.dlq_id].status is DeadLetterStatus.PENDING
    assert after[unknown.dlq_id].retry_count == 1
    assert after[unknown.dlq_id].error == "no schema is known for shop.unknown"
    assert after[raw.dlq_id] == raw

    sink_before = (tmp_path / "audit.jsonl").read_bytes()
    code, printed = await replay(settings)

    assert printed.splitlines()[0] == "replayed 0, failed again 1, skipped 2"
    assert (tmp_path / "audit.jsonl").read_bytes() == sink_before
    again = await stored(tmp_path)
    assert again[valid.dlq_id] == after[valid.dlq_id]
    assert again[unknown.dlq_id].retry_count == 2


async def test_replay_takes_only_the_filtered_entries(tmp_path):
    validation = letter(FailureReason.VALIDATION_ERROR, 1)
    incompatible = letter(FailureReason.SCHEMA_INCOMPATIBLE, 2)
    await JsonLinesDeadLetterQueue(str(tmp_path / "dead.jsonl")).write([validation, incompatible])
    out = io.StringIO()

    settings = jsonl_settings(tmp_path)
    code = await commands.dlq_replay(
        settings,
        jsonl_container(settings),
        out,
        destination="audit",
        reason=FailureReason.SCHEMA_INCOMPATIBLE,
    )

    assert (code, out.getvalue()) == (0, "replayed 1, failed again 0, skipped 0\n")
    after = await stored(tmp_path)
    assert after[validation.dlq_id].status is DeadLetterStatus.PENDING
    assert after[incompatible.dlq_id].status is DeadLetterStatus.REPLAYED


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


async def test_status_reads_offsets_and_dead_letters_when_no_pipeline_runs(tmp_path):
    settings = jsonl_settings(tmp_path)
    offsets = SqliteOffsetStore(str(tmp_path / "offsets.db"), ManualClock())
    await offsets.commit("audit", Checkpoint("node1", SourcePosition(3, 40, 1), 5))
    await offsets.aclose()
    await JsonLinesDeadLetterQueue(str(tmp_path / "dead.jsonl")).write(
        [letter(FailureReason.VALIDATION_ERROR, 1), letter(FailureReason.VALIDATION_ERROR, 2)]
    )
    out = io.StringIO()

    assert await commands.status(settings, jsonl_container(settings), out) == 0

    rows = table_rows(out.getvalue())
    assert rows[0] == ["DESTINATION", "PARTITION", "OFFSET", "LAG", "EVENTS", "DLQ", "PENDING"]
    assert rows[1] == ["audit", "node1", "3:40:1", "-", "5", "2"]
    assert "lag is only known while one runs" in out.getvalue()


async def test_status_shows_the_tallies_of_unknown_tables(tmp_path):
    gone = "5a1b0c2d-0000-4000-8000-000000000001"
    settings = jsonl_settings(tmp_path, pipeline={"unknown_tables_kept": 1})
    source = MemoryChangeSource("node1")
    for offset in range(4):
        source.fail(
            DeadLetterEvent.for_raw(
                b"raw",
                reason=FailureReason.UNKNOWN_TABLE,
                error="UnknownTableError",
                failed_at=NOW,
                position=SourcePosition(2, offset),
                schema_details={"table_id": gone},
            )
        )
    container = jsonl_container(settings)
    container.source.override(providers.Object(source))
    async with running(container) as components:
        await components.replicate(10)
    out = io.StringIO()

    assert await commands.status(settings, jsonl_container(settings), out) == 0

    text = out.getvalue()
    assert "entries of unknown tables" in text
    assert ["node1", gone, "4", "1", "2:0:0", "2:3:0"] in [r[:6] for r in table_rows(text)]
    kept = await stored(tmp_path)
    assert sorted(e.raw is not None for e in kept.values()) == [False, True]


async def test_status_shows_every_agents_position_from_the_offset_store(tmp_path):
    settings = jsonl_settings(tmp_path)
    offsets = SqliteOffsetStore(str(tmp_path / "offsets.db"), ManualClock())
    for node, position in (("node1", SourcePosition(3, 40)), ("node2", SourcePosition(7, 9))):
        await offsets.commit("audit", Checkpoint(node, position, 5))
    await offsets.aclose()
    out = io.StringIO()

    assert await commands.status(settings, jsonl_container(settings), out) == 0

    rows = [r[:4] for r in table_rows(out.getvalue())]
    assert ["audit", "node1", "3:40:0", "5"] in rows
    assert ["audit", "node2", "7:9:0", "5"] in rows


async def test_status_and_health_ask_the_running_pipeline_first():
    port = free_port()
    mirror = MemorySink("mirror")
    wiring = MemoryWiring([mirror], health={"port": port}, pipeline={"max_batch_delay_ms": 5})
    wiring.source.append(event(table="customers", key=1))
    stop = asyncio.Event()
    status_out, health_out = io.StringIO(), io.StringIO()
    async with running(wiring.container) as components:
        task = asyncio.create_task(wiring.runner(components).run(stop))
        async with serving(health_app(components, stop), "127.0.0.1", port):
            await eventually(lambda: components.progress["mirror"].caught_up)
            # Another container for the commands: were it opened, its sink would be new.
            other = Container(settings=wiring.settings)
            assert await commands.status(wiring.settings, other, status_out) == 0
            assert await commands.health(wiring.settings, other, health_out) == 0
        stop.set()
        await task

    rows = table_rows(status_out.getvalue())
    assert rows[1] == ["mirror", "node1", str(components.progress["mirror"].position), "0.0",
                       "s", "1", "0"]  # fmt: skip
    assert health_out.getvalue().endswith("status: up (reported by the running pipeline)\n")


async def test_health_checks_the_databases_itself_when_no_pipeline_answers():
    up, down = MemorySink("up"), MemorySink("down")
    down.fail_next = 1
    wiring = MemoryWiring([up, down])
    out = io.StringIO()

    code = await commands.health(wiring.settings, wiring.container, out)

    assert code == 1
    rows = table_rows(out.getvalue())
    assert rows[0] == ["KIND", "NAME", "STATUS", "LATENCY", "MESSAGE"]
    assert rows[2][:3] == ["destination", "down", "down"]
    assert out.getvalue().endswith(
        "status: degraded (checked by this command: no pipeline answered)\n"
    )


async def test_schema_accept_records_the_current_schema_for_the_destination(tmp_path):
    settings = jsonl_settings(
        tmp_path, schema_history={"type": "jsonl", "path": str(tmp_path / "history.jsonl")}
    )
    out, err = io.StringIO(), io.StringIO()
    code = await commands.schema_accept(
        jsonl_container(settings), out, err, destination="audit", table="shop.customers"
    )
    assert (code, err.getvalue()) == (0, "")
    assert out.getvalue().startswith("audit: accepted shop.customers")
    history = io.StringIO()
    await commands.schema_history(jsonl_container(settings), history, destination="audit")
    assert "CREATE_TABLE shop.customers" in history.getvalue()


async def test_schema_accept_refuses_unknown_tables_and_destinations(tmp_path):
    settings = jsonl_settings(tmp_path)
    err = io.StringIO()
    code = await commands.schema_accept(
        jsonl_container(settings), io.StringIO(), err, destination="audit", table="shop.nope"
    )
    assert code == 2
    assert "shop.nope" in err.getvalue()
    code = await commands.schema_accept(
        jsonl_container(settings), io.StringIO(), err, destination="nope", table="shop.customers"
    )
    assert code == 2
    assert "'nope'" in err.getvalue()


async def test_replay_goes_through_a_running_pipeline_when_one_answers(tmp_path):
    entry = letter(FailureReason.VALIDATION_ERROR, 1)
    await JsonLinesDeadLetterQueue(str(tmp_path / "dead.jsonl")).write([entry])
    port = free_port()
    settings = jsonl_settings(tmp_path, health={"host": "127.0.0.1", "port": port})
    container = jsonl_container(settings)
    async with running(container) as components:
        stop = asyncio.Event()
        async with serving(health_app(components, stop), "127.0.0.1", port):
            out = io.StringIO()
            # Replaying outside the pipeline would fail: only the endpoint can answer.
            unused = Container(settings=settings)
            unused.components.override(providers.Callable(_no_replay_outside_the_pipeline))
            code = await commands.dlq_replay(settings, unused, out, destination=None, reason=None)
    assert (code, out.getvalue()) == (0, "replayed 1, failed again 0, skipped 0\n")
    after = await stored(tmp_path)
    assert after[entry.dlq_id].status is DeadLetterStatus.REPLAYED


def _no_replay_outside_the_pipeline() -> None:
    raise AssertionError("the command opened adapters of its own")
