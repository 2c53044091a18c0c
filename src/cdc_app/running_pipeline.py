"""Asking a running pipeline, through its HTTP endpoint, what it knows.

A separate process checking the databases itself would open connections of its own,
and the TimescaleDB server used here hangs on a second one; a running pipeline also
knows what a store cannot tell (lag, failing batches). So the operator commands ask
it first and only open the adapters themselves when nothing answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from cdc_app.settings import HealthSettings

__all__ = ["ask_running_pipeline"]

_TIMEOUT_SECONDS = 10.0
_ANY_ADDRESS = {"", "0.0.0.0", "::"}


async def ask_running_pipeline(
    health: HealthSettings,
    path: str,
    *,
    method: str = "GET",
    params: Mapping[str, str] | None = None,
    body: Any = None,
    timeout_s: float = _TIMEOUT_SECONDS,
) -> dict[str, Any] | None:
    """The JSON object the endpoint answers at ``path`` (``body`` sent as JSON), or None
    when no pipeline answers (its endpoint is off, nothing listens, or what listens is
    something else)."""
    if not health.port:
        return None
    host = "127.0.0.1" if health.host in _ANY_ADDRESS else health.host
    host = f"[{host}]" if ":" in host else host
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                method,
                f"http://{host}:{health.port}{path}",
                params=dict(params or {}),
                json=body,
            ) as response,
        ):
            if response.content_type != "application/json":
                return None
            answer = await response.json()
            return answer if isinstance(answer, dict) else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
