"""Waiting for a state a test can observe, instead of sleeping for as long as it
usually takes: on a slow machine a sleep is too short and the test checks too early,
on a fast one it wastes the difference."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], within: float = 5.0, what: str = "condition"
) -> None:
    """Wait until ``condition()`` holds; it may be a coroutine function (a query).

    Fails after ``within`` seconds, so a state that never comes is a failure that says
    what it waited for, not a hang.
    """
    deadline = time.monotonic() + within
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} still false after {within} s")
        await asyncio.sleep(0.002)
