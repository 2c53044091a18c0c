"""How full a node's ``cdc_raw`` directory is.

Cassandra moves commit log segments holding CDC data there and only the consumer
deletes them (the change source does, once every destination committed past them).
When their total reaches ``cdc_total_space``, Cassandra rejects writes to CDC tables,
so a lagging destination must show long before that happens.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cdc_domain.ports import SourceStorage

__all__ = ["measure_cdc_raw"]

_MIB = 1024 * 1024
_DEFAULT_TOTAL_MIB = 4096
_SEGMENT_SUFFIX = ".log"


def measure_cdc_raw(directory: Path, total_space_mb: int | None) -> SourceStorage:
    """The segments and bytes (idx files included) in ``directory`` against the node's
    ``cdc_total_space`` in MiB, or, when None, Cassandra's default: the smaller of 4096
    MiB and an eighth of the volume. Blocking; raises OSError when the directory is
    unreadable. A file deleted while it is measured (the source freeing a segment, or
    Cassandra over its cap) counts as gone."""
    segments = used = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                used += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
            segments += entry.name.endswith(_SEGMENT_SUFFIX)
    if total_space_mb is not None:
        total = total_space_mb * _MIB
    else:
        total = min(_DEFAULT_TOTAL_MIB * _MIB, shutil.disk_usage(directory).total // 8)
    return SourceStorage(str(directory), segments, used, total)
