"""Settings and hooks shared by every test."""

from __future__ import annotations

import asyncio
import traceback
from types import TracebackType
from typing import Any

import pytest
from hypothesis import settings

# CI runs beside four database servers on two cores: a slow example is load, not a bug.
settings.register_profile("project", deadline=None, print_blob=True)
settings.load_profile("project")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(call: pytest.CallInfo[None]) -> pytest.TestReport:
    """On a timeout, add where every asyncio task was waiting: pytest-timeout's stack of
    an async test only shows the event loop's ``select``, not the await that hung."""
    report: pytest.TestReport = yield
    excinfo = call.excinfo
    if excinfo is not None and "from pytest-timeout" in str(excinfo.value):
        loop = _interrupted_loop(excinfo.tb)
        if loop is not None:
            report.sections.append(("asyncio tasks at the timeout", _task_stacks(loop)))
    return report


def _interrupted_loop(tb: TracebackType) -> asyncio.AbstractEventLoop | None:
    for frame, _ in traceback.walk_tb(tb):
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, asyncio.AbstractEventLoop):
            return candidate
    return None


def _task_stacks(loop: asyncio.AbstractEventLoop) -> str:
    """Each pending task down its chain of awaits (``Task.get_stack`` stops at the top)."""
    out = []
    for task in asyncio.all_tasks(loop):
        frames = []
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                break
            frames.append((frame, frame.f_lineno))
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        out.append(f"{task.get_name()}, awaiting:\n")
        out.extend(traceback.StackSummary.extract(frames).format())
    return "".join(out)
