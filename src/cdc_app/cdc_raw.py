"""How full the node's ``cdc_raw`` directory is.

Cassandra moves commit log segments holding CDC data there and only the consumer
deletes them (the source does, once every destination committed past them). When
their total reaches ``cdc_total_space``, Cassandra rejects writes to CDC tables, so a
lagging destination must show long before that happens.
"""

from __future__ import annotations

import os
import shutil

import attrs

from cdc_app.settings import CassandraSettings

__all__ = ["CdcRawUsage", "measure_cdc_raw"]

_MIB = 1024 * 1024
_DEFAULT_TOTAL_MIB = 4096
_SEGMENT_SUFFIX = ".log"


@attrs.frozen
class CdcRawUsage:
    directory: str
    segments: int
    used_bytes: int
    total_bytes: int

    @property
    def ratio(self) -> float:
        return self.used_bytes / self.total_bytes


def measure_cdc_raw(cassandra: CassandraSettings) -> CdcRawUsage:
    """The segments and bytes in ``cdc_raw_dir`` against the configured
    ``cdc_total_space_mb``, or Cassandra's default: the smaller of 4096 MiB and an
    eighth of the volume. Blocking; raises OSError when the directory is unreadable."""
    directory = cassandra.cdc_raw_dir
    segments = used = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            used += entry.stat(follow_symlinks=False).st_size
            segments += entry.name.endswith(_SEGMENT_SUFFIX)
    if cassandra.cdc_total_space_mb is not None:
        total = cassandra.cdc_total_space_mb * _MIB
    else:
        total = min(_DEFAULT_TOTAL_MIB * _MIB, shutil.disk_usage(directory).total // 8)
    return CdcRawUsage(directory, segments, used, total)
