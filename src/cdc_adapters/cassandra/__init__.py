"""Cassandra adapters: the commit log reader (segments, mutations, values, change events).

Pure Python over the files Cassandra hard-links into ``cdc_raw``; cassandra-driver is needed
only by ``schema_reader``, and the compression libraries only for compressed segments.
"""
