"""What every sink on a PostgreSQL database shares: its pool, the offsets it commits
there, its health check and its closing.

The PostgreSQL mirror and both TimescaleDB sinks write their batches and their offsets
through one pool of their own; holding that here once keeps their ``offset_store``,
``health`` and ``aclose`` from drifting apart.
"""

from __future__ import annotations

from cdc_adapters.postgres.errors import RetryPolicy
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.offsets import PostgresOffsetStore
from cdc_adapters.postgres.pool import SharedPool, own_or_shared, pool_health
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import SinkError
from cdc_domain.health import HealthReport
from cdc_domain.ports import Clock

__all__ = ["PooledSink"]


class PooledSink:
    """The base of the sinks that commit offsets in their own PostgreSQL database.

    Give ``pool`` (an asyncpg pool or a :class:`PoolHandle`) to share one (then the
    caller closes it), else the sink makes its own from ``dsn`` on first use and closes
    it in ``aclose``.
    """

    def __init__(
        self,
        *,
        name: str,
        kind: DestinationKind,
        naming: Naming,
        dsn: str | None,
        pool: SharedPool,
        pool_min_size: int,
        pool_max_size: int,
        retry: RetryPolicy | None,
        health_timeout: float,
        clock: Clock | None,
    ) -> None:
        self._name = name
        self._kind = kind
        self._naming = naming
        self._pool, self._owns_pool = own_or_shared(
            dsn, pool, min_size=pool_min_size, max_size=pool_max_size
        )
        self._retry = retry or RetryPolicy()
        self._health_timeout = health_timeout
        self._clock = clock

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> DestinationKind:
        return self._kind

    @property
    def commits_offsets(self) -> bool:
        return True

    def _translate(self, exc: Exception) -> Exception:
        """A database error that is neither transient nor poison, as the SinkError it
        is (a bug or a schema drift); anything else unchanged."""
        if isinstance(exc, SinkError) or not hasattr(exc, "sqlstate"):
            return exc
        return SinkError(f"{self._name}: {type(exc).__name__}: {exc}")

    def offset_store(self, clock: Clock) -> PostgresOffsetStore:
        """The store of the offsets this sink commits with its batches: the same table,
        through the sink's own pool, so a one-connection server is never asked for a
        second connection."""
        return PostgresOffsetStore(
            pool=self._pool, schema=self._naming.metadata_schema, clock=clock, retry=self._retry
        )

    async def health(self) -> HealthReport:
        return await pool_health(self._name, self._pool, self._health_timeout)

    async def aclose(self) -> None:
        if self._owns_pool:
            await self._pool.aclose()
