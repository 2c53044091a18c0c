"""Health as adapters report it: per dependency, with what to do about it."""

from __future__ import annotations

import enum

import attrs

__all__ = ["HealthReport", "HealthStatus"]


class HealthStatus(enum.Enum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


@attrs.frozen(slots=True)
class HealthReport:
    name: str
    status: HealthStatus
    latency_ms: float | None = None
    message: str = ""
