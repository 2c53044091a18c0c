"""A snapshot's progress on the terminal: live bars per table (rich) when the output is
a terminal, a line per table every few seconds when it is not (a log, CI).

Both render the progress JSON of :class:`~cdc_app.snapshots.SnapshotTracker`, whether
it comes from this process or from a running pipeline's ``/snapshot``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from cdc_app.tables import render_table

__all__ = ["SnapshotDisplay", "render_plan", "render_summary"]


def _count(value: Any) -> str:
    return "?" if value is None else f"{value:,}"


def _eta(seconds: Any) -> str:
    if seconds is None:
        return "ETA ?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02}:{secs:02}" if hours else f"ETA {minutes}:{secs:02}"


class SnapshotDisplay:
    """Shows successive progress snapshots; ``live`` (default: when ``stream`` is a
    terminal) draws bars, otherwise a line per table at most every ``interval_s``."""

    def __init__(
        self, stream: IO[str], *, interval_s: float = 5.0, live: bool | None = None
    ) -> None:
        self._stream = stream
        self._console = Console(file=stream)
        self._live = self._console.is_terminal if live is None else live
        self._interval = interval_s
        self._printed_at = 0.0
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> SnapshotDisplay:
        if self._live:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[rows]} rows"),
                TextColumn("{task.fields[rate]} rows/s"),
                TextColumn("{task.fields[ranges]}"),
                TextColumn("{task.fields[eta]}"),
                console=self._console,
            )
            self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, status: Mapping[str, Any]) -> None:
        if self._progress is not None:
            for table in status["tables"]:
                self._bar(self._progress, table)
            return
        now = time.monotonic()
        if now - self._printed_at < self._interval and status["state"] == "running":
            return
        self._printed_at = now
        for table in status["tables"]:
            self._stream.write(_line(table) + "\n")
        self._stream.flush()

    def _bar(self, progress: Progress, table: Mapping[str, Any]) -> None:
        ranges = table["ranges"]
        rows = _count(table["rows"])
        rate = f"{table['rows_per_s']:,.0f}"
        done = f"ranges {ranges['done']}/{ranges['to_read']}" + (
            f" ({ranges['failed']} failed)" if ranges["failed"] else ""
        )
        eta = _eta(table["eta_s"])
        expected = table["expected_rows"]
        task = self._tasks.get(table["table"])
        if task is None:
            task = progress.add_task(
                table["table"], total=expected, rows=rows, rate=rate, ranges=done, eta=eta
            )
            self._tasks[table["table"]] = task
        progress.update(
            task,
            completed=table["rows"],
            total=expected,
            rows=rows,
            rate=rate,
            ranges=done,
            eta=eta,
        )


def _line(table: Mapping[str, Any]) -> str:
    ranges = table["ranges"]
    failed = f", {ranges['failed']} failed" if ranges["failed"] else ""
    expected = table["expected_rows"]
    of = f" of ~{_count(expected)}" if expected is not None else ""
    return (
        f"{table['table']}: {_count(table['rows'])}{of} rows, {table['rows_per_s']:,.0f} rows/s, "
        f"ranges {ranges['done']}/{ranges['to_read']}{failed}, {_eta(table['eta_s'])}"
    )


def render_plan(plan: Mapping[str, Any]) -> str:
    """``--dry-run``'s answer, and what a snapshot says before it starts."""
    rows = []
    for table in plan["tables"]:
        destinations = ", ".join(
            f"{name} ({'resume' if d['resumed'] else 'new'}, {d['to_read']} to read)"
            for name, d in table["destinations"].items()
        )
        rows.append(
            (
                table["table"],
                table["ranges"],
                table["to_read"],
                _count(table["estimated_rows"]),
                destinations,
            )
        )
    text = f"snapshot {plan['name']}\n" + render_table(
        ("TABLE", "RANGES", "TO READ", "EST. ROWS", "DESTINATIONS"), rows
    )
    if not plan["tables"]:
        text += "nothing to read: every table asked for is snapshotted in every destination\n"
    for skipped in plan["skipped"]:
        text += f"skipped {skipped['table']}: {skipped['why']}\n"
    return text


def render_summary(status: Mapping[str, Any]) -> str:
    """The end of a snapshot: per table and destination, what was written."""
    rows = [
        (
            table["table"],
            name,
            _count(table["rows"]),
            _count(d["written"]),
            d["failed_ranges"],
            "finished" if d["finished"] else "unfinished",
        )
        for table in status["tables"]
        for name, d in table["destinations"].items()
    ]
    text = render_table(("TABLE", "DESTINATION", "ROWS", "EVENTS", "FAILED RANGES", ""), rows)
    text += f"snapshot {status['name']}: {status['state']}"
    if status.get("error"):
        text += f" ({status['error']})"
    return text + "\n"
