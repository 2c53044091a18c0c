"""What every sink on a PostgreSQL database shares: its pool, the offsets it commits
there, its health check and its closing.

The PostgreSQL mirror and both TimescaleDB sinks write their batches and their offsets
through one pool of their own; holding that here once keeps their ``offset_store``,
``health`` and ``aclose`` from drifting apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from cdc_adapters.postgres.errors import RetryPolicy, is_poison
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.offsets import PostgresOffsetStore, ensure_offsets_table
from cdc_adapters.postgres.poison import find_poison
from cdc_adapters.postgres.pool import SharedPool, own_or_shared, pool_health
from cdc_adapters.postgres.transactions import ddl_transaction, write_with_offset
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import EventsRejectedError, SinkError
from cdc_domain.events import ChangeEvent
from cdc_domain.health import HealthReport
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import Clock

__all__ = ["PooledSink", "Transaction"]

Transaction = Callable[[Sequence[ChangeEvent], Checkpoint | None, bool], Awaitable[None]]
"""Write events (and the checkpoint, unless None) in one transaction; with ``trial``
true, roll it back: it only asks whether those events can be written."""
Step = Callable[[Any], Awaitable[None]]


class PooledSink:
    """The base of the sinks that commit offsets in their own PostgreSQL database.

    Give ``pool`` (an asyncpg pool or a :class:`PoolHandle`) to share one (then the
    caller closes it), else the sink makes its own from ``dsn`` on first use and closes
    it in ``aclose``: ``pool_idle_s`` and ``connect_timeout`` as
    :func:`~cdc_adapters.postgres.pool.create_pool` takes them.
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
        pool_idle_s: float | None,
        connect_timeout: float,
        retry: RetryPolicy | None,
        health_timeout: float,
        clock: Clock | None,
    ) -> None:
        self._name = name
        self._kind = kind
        self._naming = naming
        self._pool, self._owns_pool = own_or_shared(
            dsn,
            pool,
            min_size=pool_min_size,
            max_size=pool_max_size,
            connect_timeout=connect_timeout,
            idle_s=pool_idle_s,
        )
        self._retry = retry or RetryPolicy()
        self._health_timeout = health_timeout
        self._clock = clock
        self._offsets_ready = False

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

    def _reject(self, rejected: Mapping[str, str]) -> None:
        """Refuse the batch when values were found unwritable before sending it."""
        if rejected:
            reasons = "; ".join(sorted(set(rejected.values()))[:5])
            raise EventsRejectedError(f"{self._name}: {reasons}", list(rejected))

    async def _commit(
        self,
        events: Sequence[ChangeEvent],
        checkpoint: Checkpoint | None,
        transaction: Transaction,
    ) -> None:
        """Write ``events`` and ``checkpoint`` in one ``transaction``. When the database
        refuses a value, nothing is written: the events that fail alone are found by
        bisecting the batch with trial transactions and rejected by id."""
        try:
            await transaction(events, checkpoint, False)
        except Exception as exc:
            if not is_poison(exc):
                raise self._translate(exc) from exc

            async def fails(subset: Sequence[ChangeEvent]) -> bool:
                try:
                    await transaction(subset, None, True)
                except Exception as trial_exc:
                    if is_poison(trial_exc):
                        return True
                    raise
                return False

            bad = await find_poison(events, fails)
            raise EventsRejectedError(f"{self._name}: {exc}", bad) from exc

    async def _ensure_offsets(self, connection: Any) -> None:
        """The offsets table, once per sink; under its schema's lock (the one the mirror's
        DDL takes there too), so sinks starting together never race to create either."""
        if not self._offsets_ready:
            schema = self._naming.metadata_schema
            async with ddl_transaction(connection, f"cdc:{schema}"):
                await ensure_offsets_table(connection, schema)
            self._offsets_ready = True

    async def _with_offset(
        self, ensure: Step, apply: Step, checkpoint: Checkpoint | None, trial: bool
    ) -> None:
        """``apply`` and the checkpoint's offset row in one transaction, after
        ``ensure`` made the tables they need."""
        await write_with_offset(
            self._pool,
            retry=self._retry,
            what=f"{self._name} write",
            ensure=ensure,
            apply=apply,
            metadata_schema=self._naming.metadata_schema,
            destination=self._name,
            checkpoint=checkpoint,
            clock=self._clock,
            trial=trial,
        )

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
