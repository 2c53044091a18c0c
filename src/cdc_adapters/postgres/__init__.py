"""PostgreSQL adapters: the current-state mirror sink, offsets and dead letters.

asyncpg is imported only here (the ``[postgres]`` extra). The TimescaleDB adapters
reuse these modules, TimescaleDB being PostgreSQL underneath.
"""

from cdc_adapters.postgres.dead_letters import PostgresDeadLetterQueue
from cdc_adapters.postgres.errors import RetryPolicy
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.offsets import PostgresOffsetStore
from cdc_adapters.postgres.pool import PoolHandle, create_pool
from cdc_adapters.postgres.sink import PostgresSink

__all__ = [
    "Naming",
    "PoolHandle",
    "PostgresDeadLetterQueue",
    "PostgresOffsetStore",
    "PostgresSink",
    "RetryPolicy",
    "create_pool",
]
