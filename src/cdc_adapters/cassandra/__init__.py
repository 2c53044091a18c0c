"""Cassandra adapters: the commit log reader (segments, mutations, values, change events).

Pure Python over the files Cassandra hard-links into ``cdc_raw``; cassandra-driver is needed
only to read schemas from a node (imported when first connecting), and the compression
libraries only for compressed segments.
"""

from cdc_adapters.cassandra.change_source import CassandraChangeSource, SourceStats
from cdc_adapters.cassandra.schema_source import CassandraSchemaSource
from cdc_adapters.cassandra.snapshot_source import CassandraSnapshotSource

__all__ = [
    "CassandraChangeSource",
    "CassandraSchemaSource",
    "CassandraSnapshotSource",
    "SourceStats",
]
