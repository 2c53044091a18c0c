"""The ``cdc-app`` command.

Exit codes: 0 done, 1 the pipeline failed, 2 the command line or configuration is
wrong. A configuration problem is one line on stderr naming the key, never a
traceback: it is for the person who wrote the file, who needs the key, not the stack.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import sys
from collections.abc import Sequence

import structlog

from cdc_app.config import ConfigError, load_settings, render_settings
from cdc_app.container import Container, running
from cdc_app.logs import configure_logging
from cdc_app.masking_rules import masking_policy
from cdc_app.runner import install_stop_signals, replicate_until_stopped
from cdc_app.settings import Settings

__all__ = ["main"]

_OK, _FAILED, _USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cdc-app`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help(sys.stderr)
        return _USAGE
    try:
        if args.command == "check":
            return _check(args.file)
        return _run(args.config, once=args.once)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return _USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdc-app", description="Change data capture from Apache Cassandra."
    )
    version = importlib.metadata.version("cassandra-cdc")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    commands = parser.add_subparsers(title="commands")

    config = commands.add_parser("config", help="work with configuration files")
    config_commands = config.add_subparsers(title="config commands", required=True)
    check = config_commands.add_parser(
        "check", help="validate a file and print the resolved configuration, secrets masked"
    )
    check.add_argument("file", help="the YAML configuration file")
    check.set_defaults(command="check")

    run = commands.add_parser("run", help="replicate changes until SIGINT or SIGTERM")
    run.add_argument("--config", required=True, help="the YAML configuration file")
    run.add_argument("--once", action="store_true", help="run a single batch, then exit")
    run.set_defaults(command="run")
    return parser


def _check(path: str) -> int:
    settings = load_settings(path)
    masking_policy(settings.masking)
    sys.stdout.write(render_settings(settings))
    return _OK


def _run(path: str, *, once: bool) -> int:
    settings = load_settings(path)
    configure_logging(settings.logging)
    return asyncio.run(_replicate(settings, once=once))


async def _replicate(settings: Settings, *, once: bool) -> int:
    log = structlog.get_logger("cdc_app")
    stop = asyncio.Event()
    install_stop_signals(stop, log)
    container = Container(settings=settings)
    try:
        async with running(container) as replicate:
            log.info(
                "started",
                source=settings.source.TYPE,
                partition=settings.source.partition_id,
                destinations=[d.name for d in settings.destinations],
            )
            ok = await replicate_until_stopped(replicate, settings.pipeline, stop, log, once=once)
    except ConfigError:
        raise
    except Exception as exc:
        log.error("stopped on an error", error=f"{type(exc).__name__}: {exc}")
        return _FAILED
    log.info("stopped")
    return _OK if ok else _FAILED
