"""The operator commands: ``health``, ``status``, ``dlq list|show|replay`` and
``schema accept|history``.

Each takes validated settings, writes its answer to ``out`` and returns the exit code
(see :mod:`cdc_app.cli`). Dead letters are printed as stored, which is after masking:
an operator sees what destinations would have received, never more.
"""

from __future__ import annotations

import json
from typing import IO, Any

from cdc_app.components import destination_offsets
from cdc_app.container import Container, opened, running
from cdc_app.health_checks import check_health
from cdc_app.running_pipeline import ask_running_pipeline
from cdc_app.settings import Settings
from cdc_app.snapshot_display import render_summary
from cdc_app.snapshots import progress_json
from cdc_app.status import agent_positions, destination_statuses, unknown_tables
from cdc_app.tables import render_table
from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.health import HealthStatus
from cdc_domain.schema_evolution import SchemaEvolution
from cdc_domain.serialization import make_converter
from cdc_domain.snapshot_progress import SnapshotProgress, TableProgress

__all__ = [
    "dlq_list",
    "dlq_replay",
    "dlq_show",
    "health",
    "schema_accept",
    "schema_history",
    "status",
]

HEALTH_EXIT = {HealthStatus.UP: 0, HealthStatus.DEGRADED: 1, HealthStatus.DOWN: 2}
"""``cdc-app health`` exits 0 up, 1 degraded, 2 down (and 2 for a configuration error)."""

_ERROR_WIDTH = 60
_REPLAY_TIMEOUT_S = 600.0


async def health(settings: Settings, container: Container, out: IO[str]) -> int:
    report = await ask_running_pipeline(settings.health, "/health")
    source = "reported by the running pipeline"
    if report is None:
        source = "checked by this command: no pipeline answered"
        async with running(container) as components:
            report = (await check_health(components)).to_json()
    rows = [
        (
            check["kind"],
            check["name"],
            check["status"],
            "-" if check["latency_ms"] is None else f"{check['latency_ms']:.1f} ms",
            check["message"],
        )
        for check in report["checks"]
    ]
    out.write(render_table(("KIND", "NAME", "STATUS", "LATENCY", "MESSAGE"), rows))
    out.write(f"\nstatus: {report['status']} ({source})\n")
    return HEALTH_EXIT[HealthStatus(report["status"])]


async def status(settings: Settings, container: Container, out: IO[str]) -> int:
    answer = await ask_running_pipeline(settings.health, "/status")
    running_snapshot: dict[str, Any] | None = None
    if answer is not None:
        statuses: list[dict[str, Any]] = answer["destinations"]
        agents: list[dict[str, Any]] = answer["agents"]
        tallies: list[dict[str, Any]] = answer["unknown_tables"]
        snapshots: list[dict[str, Any]] = answer.get("snapshots", [])
        running_snapshot = answer.get("snapshot")
    else:
        async with opened(container) as adapters:
            clock, dead_letters = adapters.clock(), await adapters.dead_letters()
            stores = destination_offsets(await adapters.sinks(), await adapters.offsets(), clock)
            found = await destination_statuses(
                names=[d.name for d in settings.destinations],
                partition_id=settings.source.partition_id,
                offsets=stores,
                dead_letters=dead_letters,
                clock=clock,
            )
            tallies = await unknown_tables(dead_letters)
            progress = SnapshotProgress(settings.source.partition_id)
            recorded: list[TableProgress] = []
            for name, store in stores.items():
                recorded.extend((await progress.load(store, name)).values())
            snapshots = progress_json(recorded)
            agents = await agent_positions(stores)
        statuses = [s.to_json() for s in found]
    rows = [
        (
            s["name"],
            s["partition_id"],
            s["position"] or "not started",
            "-" if s["lag_seconds"] is None else f"{s['lag_seconds']:.1f} s",
            s["events_processed"],
            s["dead_letters_pending"],
        )
        for s in statuses
    ]
    headers = ("DESTINATION", "PARTITION", "OFFSET", "LAG", "EVENTS", "DLQ PENDING")
    out.write(render_table(headers, rows))
    if agents:
        out.write("\nevery agent's position (one agent per Cassandra node):\n")
        out.write(
            render_table(
                ("DESTINATION", "PARTITION", "OFFSET", "EVENTS", "UPDATED AT"),
                [
                    (
                        a["destination"],
                        a["partition_id"],
                        a["position"],
                        a["events_processed"],
                        a["updated_at"],
                    )
                    for a in agents
                ],
            )
        )
    if tallies:
        out.write(
            "\nentries of unknown tables (dropped before their schema was read; "
            "'cdc-app dlq list --reason UNKNOWN_TABLE' shows those kept in full):\n"
        )
        out.write(
            render_table(
                ("PARTITION", "TABLE ID", "ENTRIES", "KEPT", "FIRST", "LAST", "LAST SEEN"),
                [
                    (
                        t["partition_id"],
                        t["table_id"],
                        t["entries"],
                        t["kept_in_full"],
                        t["first_position"],
                        t["last_position"],
                        t["last_seen"],
                    )
                    for t in tallies
                ],
            )
        )
    if snapshots:
        out.write("\nsnapshots, as recorded:\n")
        out.write(
            render_table(
                ("TABLE", "DESTINATION", "STATE", "RANGES", "ROWS", "RUN"),
                [
                    (
                        p["table"],
                        p["destination"],
                        p["state"],
                        f"{p['ranges_done']}/{p['ranges']}",
                        p["rows"],
                        p["run"],
                    )
                    for p in snapshots
                ],
            )
        )
    if running_snapshot is not None:
        out.write("\nthe pipeline's latest snapshot:\n" + render_summary(running_snapshot))
    if answer is None:
        out.write("\nno pipeline answered: lag is only known while one runs\n")
    return 0


async def dlq_list(
    container: Container,
    out: IO[str],
    *,
    destination: str | None,
    reason: FailureReason | None,
    include_replayed: bool,
    limit: int | None,
) -> int:
    async with opened(container) as adapters:
        queue = await adapters.dead_letters()
        entries = await queue.list(
            destination=destination, reason=reason, include_replayed=include_replayed, limit=limit
        )
    rows = [
        (
            e.dlq_id,
            e.failed_at.isoformat(timespec="seconds"),
            e.reason.value,
            e.destination,
            e.table,
            str(e.position) if e.position else None,
            e.retry_count,
            e.status.value,
            _shortened(e.error),
        )
        for e in entries
    ]
    headers = (
        "ID",
        "FAILED AT",
        "REASON",
        "DESTINATION",
        "TABLE",
        "POSITION",
        "RETRIES",
        "STATUS",
        "ERROR",
    )
    out.write(render_table(headers, rows))
    return 0


async def dlq_show(container: Container, out: IO[str], err: IO[str], dlq_id: str) -> int:
    """One entry in full, as JSON; ``dlq_id`` may be any unambiguous prefix."""
    async with opened(container) as adapters:
        entries = await (await adapters.dead_letters()).list(include_replayed=True)
    found = [e for e in entries if e.dlq_id.startswith(dlq_id)]
    if len(found) != 1:
        problem = "no dead letter" if not found else f"{len(found)} dead letters match"
        err.write(f"{problem} {dlq_id!r}\n")
        return 1
    out.write(json.dumps(_printable(found[0]), indent=2, ensure_ascii=False) + "\n")
    return 0


async def dlq_replay(
    settings: Settings,
    container: Container,
    out: IO[str],
    *,
    destination: str | None,
    reason: FailureReason | None,
) -> int:
    """Replays through the running pipeline when one answers (its sinks, its
    connections), else through adapters opened here. Exits 1 when some entries failed
    again (they stay pending), else 0."""
    params = {k: v for k, v in (("destination", destination), ("reason", reason)) if v}
    report = await ask_running_pipeline(
        settings.health,
        "/dlq/replay",
        method="POST",
        params={k: v.value if isinstance(v, FailureReason) else v for k, v in params.items()},
        timeout_s=_REPLAY_TIMEOUT_S,
    )
    if report is None:
        async with running(container) as components:
            replayed = await components.replicate.replay(destination=destination, reason=reason)
            report = replayed.to_json()
    failed, skipped = report["failed"], report["skipped"]
    out.write(
        f"replayed {report['replayed']}, failed again {len(failed)}, skipped {len(skipped)}\n"
    )
    for entry in failed:
        out.write(f"failed again  {entry['dlq_id']}  {_shortened(entry['error'])}\n")
    for entry in skipped:
        out.write(f"skipped       {entry['dlq_id']}  {entry['why']}\n")
    return 1 if failed else 0


async def schema_accept(
    container: Container, out: IO[str], err: IO[str], *, destination: str, table: str
) -> int:
    """Record the table's current schema as what ``destination`` holds, once an operator
    has changed the destination by hand; the pipeline then unblocks the table. Exits 2
    when the table or destination is unknown."""
    keyspace, _, name = table.partition(".")
    async with opened(container) as adapters:
        if destination not in {d.name for d in container.settings().destinations}:
            err.write(f"no destination named {destination!r} is configured\n")
            return 2
        schema = await (await adapters.schemas()).table(keyspace, name)
        if schema is None:
            err.write(f"no table {table!r} is known to the schema source\n")
            return 2
        evolution = SchemaEvolution(await adapters.history())
        change = await evolution.accept(destination, schema, adapters.clock().now())
    out.write(f"{destination}: accepted {change.qualified_table} (schema {schema.version})\n")
    return 0


async def schema_history(container: Container, out: IO[str], *, destination: str | None) -> int:
    """Every schema change applied, oldest first: the audit trail of each destination."""
    async with opened(container) as adapters:
        applied = await (await adapters.history()).changes(destination)
    rows = [
        [entry.applied_at.isoformat(timespec="seconds"), entry.destination, entry.change.describe()]
        for entry in applied
    ]
    out.write(render_table(["applied at", "destination", "change"], rows))
    return 0


def _printable(entry: DeadLetterEvent) -> Any:
    return make_converter().unstructure(entry)


def _shortened(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _ERROR_WIDTH else line[: _ERROR_WIDTH - 1] + "…"
