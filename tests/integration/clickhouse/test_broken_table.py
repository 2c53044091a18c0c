"""One table ClickHouse refuses does not hold back the others: it pauses for this
destination alone, its events go to the dead letter queue, and /health names it."""

from __future__ import annotations

from dependency_injector import providers

from cdc_adapters.clickhouse import ClickHouseClient
from cdc_adapters.memory import MemorySchemaSource
from cdc_domain.dead_letters import FailureReason
from tests.factories import event, table
from tests.support.waiting import eventually
from tests.unit.app.test_app_endpoint import checks, served
from tests.unit.app.wiring import CUSTOMERS, MemoryWiring

BROKEN = table("broken", regular={"v": "int"})


async def test_a_table_clickhouse_refuses_pauses_alone_and_health_names_it(make_sink, server_url):
    sink, read_back = await make_sink()
    database = sink.database_for("shop")
    client = ClickHouseClient(server_url)
    try:
        # An operator's view stands where the sink wants the table: every DDL on it fails.
        await client.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        await client.execute(f"CREATE VIEW `{database}`.`broken` AS SELECT 1 AS x")
    finally:
        await client.aclose()
    wiring = MemoryWiring([sink], pipeline={"max_batch_delay_ms": 5, "max_batch_events": 4})
    wiring.container.schemas.override(providers.Object(MemorySchemaSource([CUSTOMERS, BROKEN])))
    for key in range(6):
        wiring.source.append(event(table="customers", key=key, columns={"name": f"n{key}"}))
        if key % 2:
            wiring.source.append(event(table="broken", key=key, columns={"v": key}))

    async with served(wiring) as endpoint:
        customers = {}

        async def all_customers() -> bool:
            customers.update(await read_back(CUSTOMERS))
            return len(customers) == 6

        await eventually(all_customers, within=30)
        await eventually(lambda: endpoint.components.progress["clickhouse"].caught_up, within=30)
        _, body = await endpoint.get("/health")

    replication = checks(body)["replication", "clickhouse"]
    assert body["status"] == "degraded"
    assert replication["status"] == "degraded"
    assert "shop.broken" in replication["message"]
    assert "paused" in replication["message"]
    letters = await wiring.dead_letters.list(destination="clickhouse")
    assert sorted(e.event.partition_key["id"] for e in letters) == [1, 3, 5]
    assert {e.reason for e in letters} == {FailureReason.SCHEMA_INCOMPATIBLE}
