"""ClickHouse adapters: the analytics mirror sink and an offset store (extra ``[clickhouse]``).

See ADR 0010 for how aggregating tables fed by materialized views become a faithful
last-write-wins mirror that any number of writers converge, and which types fall back
on servers older than ClickHouse 21.9.
"""

from cdc_adapters.clickhouse.client import ClickHouseClient, RetryPolicy
from cdc_adapters.clickhouse.offsets import ClickHouseOffsetStore
from cdc_adapters.clickhouse.sink import ClickHouseSink

__all__ = [
    "ClickHouseClient",
    "ClickHouseOffsetStore",
    "ClickHouseSink",
    "RetryPolicy",
]
