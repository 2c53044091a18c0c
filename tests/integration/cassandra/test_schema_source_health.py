"""The Cassandra schema source reports the node's health the way the endpoint shows it."""

import os

from cdc_adapters.cassandra import CassandraSchemaSource
from cdc_domain.health import HealthStatus


async def test_a_live_node_is_up_with_its_version(cassandra_endpoint):
    source = CassandraSchemaSource(hosts=[cassandra_endpoint.contact_point])
    try:
        report = await source.health()
    finally:
        await source.aclose()
    assert report.status is HealthStatus.UP
    assert report.latency_ms is not None
    assert report.message.endswith(" " + os.environ["CDC_TEST_CASSANDRA_VERSION"])


async def test_an_unreachable_node_is_down_not_a_crash():
    source = CassandraSchemaSource(hosts=["127.0.0.1:1"])
    try:
        report = await source.health()
    finally:
        await source.aclose()
    assert report.status is HealthStatus.DOWN
    assert "127.0.0.1:1" in report.message
