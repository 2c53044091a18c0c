"""The ``cdc-app`` command.

Exit codes: 0 done, 1 the pipeline failed (or, for ``dlq show``/``dlq replay``, an
entry was not found or failed again), 2 the command line or configuration is wrong.
``cdc-app health`` exits 0 up, 1 degraded, 2 down. A configuration problem is one line
on stderr naming the key, never a traceback: it is for the person who wrote the file,
who needs the key, not the stack.

``run`` exits 0 after a stop that finished its batches in flight, 1 when the stop had
to abandon some (they are read again at the next start) or a loop crashed.
``snapshot``'s exit codes are in :mod:`cdc_app.snapshot_command`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import sys
from collections.abc import AsyncIterator, Sequence

import structlog
from aiohttp import web

from cdc_app import clickhouse_cli, commands, snapshot_command
from cdc_app.commitlog_cli import add_commitlog_commands
from cdc_app.config import ConfigError, load_settings, render_settings
from cdc_app.container import Container, running
from cdc_app.endpoint import health_app, serving
from cdc_app.garbage_collection import tune_for_streaming
from cdc_app.logs import configure_logging
from cdc_app.masking_rules import masking_policy
from cdc_app.runner import Runner
from cdc_app.settings import Settings
from cdc_app.shutdown import install_stop_signals
from cdc_app.snapshots import SnapshotJobs, SnapshotRequest
from cdc_domain.dead_letters import FailureReason
from cdc_domain.errors import classify, describe_error
from cdc_domain.tokens import TokenRange, TokenRangeError

__all__ = ["main"]

_OK, _FAILED, _USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cdc-app`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help(sys.stderr)
        return _USAGE
    handler = getattr(args, "handler", None)
    if handler is not None:
        code: int = handler(args)
        return code
    try:
        if args.command == "check":
            return _check(args.file)
        settings = load_settings(args.config)
        if args.command == "run":
            configure_logging(settings.logging)
            return asyncio.run(_replicate(settings, once=args.once))
        return asyncio.run(_inspect(args, settings))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return _USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdc-app", description="Change data capture from Apache Cassandra."
    )
    version = importlib.metadata.version("cassandra-cdc")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    commands_ = parser.add_subparsers(title="commands")
    configured = argparse.ArgumentParser(add_help=False)
    configured.add_argument("--config", required=True, help="the YAML configuration file")

    config = commands_.add_parser("config", help="work with configuration files")
    config_commands = config.add_subparsers(title="config commands", required=True)
    check = config_commands.add_parser(
        "check", help="validate a file and print the resolved configuration, secrets masked"
    )
    check.add_argument("file", help="the YAML configuration file")
    check.set_defaults(command="check")

    run = commands_.add_parser(
        "run", parents=[configured], help="replicate changes until SIGINT or SIGTERM"
    )
    run.add_argument("--once", action="store_true", help="run a single batch, then exit")
    run.set_defaults(command="run")

    health = commands_.add_parser(
        "health",
        parents=[configured],
        help="check every dependency; exit 0 up, 1 degraded, 2 down",
    )
    health.set_defaults(command="health")
    status = commands_.add_parser(
        "status",
        parents=[configured],
        help="each destination's offset, lag, events processed and pending dead letters",
    )
    status.set_defaults(command="status")

    dlq = commands_.add_parser("dlq", help="inspect and replay dead letters")
    dlq_commands = dlq.add_subparsers(title="dlq commands", required=True)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--destination", help="only this destination's entries")
    filters.add_argument(
        "--reason", type=FailureReason, metavar="REASON", help="only entries failed for REASON"
    )
    listing = dlq_commands.add_parser(
        "list", parents=[configured, filters], help="list pending dead letters"
    )
    listing.add_argument("--all", action="store_true", help="include replayed entries")
    listing.add_argument("--limit", type=int, help="at most this many entries")
    listing.set_defaults(command="dlq list")
    show = dlq_commands.add_parser("show", parents=[configured], help="print one entry in full")
    show.add_argument("id", help="the entry's id, or an unambiguous prefix of it")
    show.set_defaults(command="dlq show")
    replay = dlq_commands.add_parser(
        "replay",
        parents=[configured, filters],
        help="write pending entries to their destination again; those that fail stay pending",
    )
    replay.set_defaults(command="dlq replay")

    snapshot = commands_.add_parser(
        "snapshot",
        parents=[configured],
        help="read the rows tables already hold into the destinations (resumable; the "
        "running pipeline does it when one answers)",
    )
    snapshot.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="KS.TABLE",
        help="only this captured table (ks.* for a keyspace); repeatable; default: all",
    )
    snapshot.add_argument(
        "--destination", action="append", default=[], help="only this destination; repeatable"
    )
    snapshot.add_argument(
        "--token-range",
        type=_token_range,
        metavar="START:END",
        help="re-read only the tokens above START up to END (a re-sync; not recorded)",
    )
    snapshot.add_argument(
        "--all-ranges",
        action="store_true",
        help="every range of the ring, not only those this agent's node is primary for",
    )
    snapshot.add_argument(
        "--restart", action="store_true", help="start over instead of resuming an unfinished run"
    )
    snapshot.add_argument(
        "--dry-run", action="store_true", help="print the plan (tables, ranges, estimated rows)"
    )
    snapshot.set_defaults(command="snapshot")

    schema = commands_.add_parser(
        "schema", help="table schemas, as nodes and destinations hold them"
    )
    schema_commands = schema.add_subparsers(title="schema commands", required=True)
    accept = schema_commands.add_parser(
        "accept",
        parents=[configured],
        help="after fixing a destination by hand, record the table's current schema as applied",
    )
    accept.add_argument("--destination", required=True, help="the destination's name")
    accept.add_argument("--table", required=True, help="keyspace.table")
    accept.set_defaults(command="schema accept")
    history = schema_commands.add_parser(
        "history", parents=[configured], help="every schema change applied, oldest first"
    )
    history.add_argument("--destination", help="only this destination's changes")
    history.set_defaults(command="schema history")
    add_commitlog_commands(commands_, schema_commands)
    clickhouse_cli.add_clickhouse_commands(commands_, configured)
    return parser


def _token_range(text: str) -> TokenRange:
    try:
        return TokenRange.parse(text)
    except TokenRangeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check(path: str) -> int:
    settings = load_settings(path)
    masking_policy(settings.masking)
    sys.stdout.write(render_settings(settings))
    return _OK


async def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    container = Container(settings=settings)
    out = sys.stdout
    if args.command == "health":
        return await commands.health(settings, container, out)
    if args.command == "status":
        return await commands.status(settings, container, out)
    if args.command == "dlq list":
        return await commands.dlq_list(
            container,
            out,
            destination=args.destination,
            reason=args.reason,
            include_replayed=args.all,
            limit=args.limit,
        )
    if args.command == "dlq show":
        return await commands.dlq_show(container, out, sys.stderr, args.id)
    if args.command == "schema accept":
        return await commands.schema_accept(
            container, out, sys.stderr, destination=args.destination, table=args.table
        )
    if args.command == "schema history":
        return await commands.schema_history(container, out, destination=args.destination)
    if args.command == "clickhouse migrate":
        return await clickhouse_cli.migrate(
            container, out, sys.stderr, destination=args.destination, tables=args.table
        )
    if args.command == "snapshot":
        request = SnapshotRequest(
            tables=tuple(args.table),
            destinations=tuple(args.destination),
            token_range=args.token_range,
            all_ranges=args.all_ranges,
            restart=args.restart,
        )
        tune_for_streaming()
        return await snapshot_command.snapshot(
            settings, container, out, sys.stderr, request, dry_run=args.dry_run
        )
    return await commands.dlq_replay(
        settings, container, out, destination=args.destination, reason=args.reason
    )


async def _replicate(settings: Settings, *, once: bool) -> int:
    log = structlog.get_logger("cdc_app")
    stop = asyncio.Event()
    install_stop_signals(stop, settings.pipeline.shutdown_timeout_s, log)
    container = Container(settings=settings)
    try:
        async with running(container) as components:
            tune_for_streaming()
            if once:
                _started(log, settings)
                outcomes = await components.replicate(settings.pipeline.max_batch_events)
                for outcome in outcomes:
                    if outcome.error is not None:
                        log.warning(
                            "destination failed",
                            destination=outcome.destination,
                            error=describe_error(outcome.error),
                            failure=classify(outcome.error).value,
                        )
                clean = all(outcome.ok for outcome in outcomes)
            else:
                async with (
                    _endpoint(settings, health_app(components, stop), log),
                    _automatic_snapshots(components.snapshots, settings, stop, log) as holds,
                ):
                    _started(log, settings)
                    runner = Runner(
                        replicate=components.replicate,
                        destinations=components.destinations,
                        progress=components.progress,
                        metrics=components.metrics,
                        pipeline=settings.pipeline,
                        log=log,
                        holds=holds,
                    )
                    clean = await runner.run(stop)
    except ConfigError:
        raise
    except Exception as exc:
        log.error("stopped on an error", error=describe_error(exc))
        return _FAILED
    log.info("stopped", clean=clean)
    return _OK if clean else _FAILED


@contextlib.asynccontextmanager
async def _endpoint(
    settings: Settings, app: web.Application, log: structlog.typing.FilteringBoundLogger
) -> AsyncIterator[None]:
    port = settings.health.port
    if port is None:
        yield
        return
    async with serving(app, settings.health.host, port) as url:
        log.info("endpoint listening", url=url)
        yield


@contextlib.asynccontextmanager
async def _automatic_snapshots(
    jobs: SnapshotJobs,
    settings: Settings,
    stop: asyncio.Event,
    log: structlog.typing.FilteringBoundLogger,
) -> AsyncIterator[dict[str, asyncio.Event]]:
    """What ``source.snapshot`` asks for, beside the stream; yields the holds the
    destinations' loops wait on (see :meth:`SnapshotJobs.automatic`). On the way out, a
    running snapshot gets ``shutdown_timeout_s`` to end its pages in flight."""
    holds = jobs.automatic(settings.source.snapshot, stop)
    try:
        yield holds
    finally:
        stop.set()
        await jobs.aclose()
        try:
            await asyncio.wait_for(jobs.wait(), settings.pipeline.shutdown_timeout_s)
        except TimeoutError:
            log.warning("the snapshot was cut short; it resumes at the next start")


def _started(log: structlog.typing.FilteringBoundLogger, settings: Settings) -> None:
    log.info(
        "started",
        source=settings.source.TYPE,
        partition=settings.source.partition_id,
        destinations=[d.name for d in settings.destinations],
    )
