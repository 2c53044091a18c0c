"""The segments in a ``cdc_raw`` directory that hold CDC data, in segment-id order.

Cassandra hard-links every new segment into ``cdc_raw`` and writes ``<segment>_cdc.idx``
once the segment holds synced CDC data; a ``.log`` without an idx has nothing to read
yet (or never will, and Cassandra removes it). The idx is rewritten in place on every
sync, so a reader can catch it empty: such a segment is listed with ``index`` None and
the reader tries again later. Files may vanish at any time (Cassandra 4.1+ deletes the
oldest segments itself when ``cdc_block_writes`` is off).
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from cdc_adapters.cassandra.segment import CdcIndex, parse_segment_name, read_cdc_index
from cdc_domain.errors import SourceError

__all__ = ["ListedSegment", "idx_path", "list_segments"]

_IDX_SUFFIX = "_cdc.idx"


def idx_path(log: Path) -> Path:
    return log.with_name(log.stem + _IDX_SUFFIX)


@attrs.frozen(slots=True)
class ListedSegment:
    segment_id: int
    log: Path
    index: CdcIndex | None

    @property
    def idx(self) -> Path:
        return idx_path(self.log)


def list_segments(directory: Path, *, from_id: int = 0) -> list[ListedSegment]:
    """Segments with an idx file and an id of at least ``from_id``, oldest first.

    Raises :class:`SourceError` when the directory itself cannot be read.
    """
    try:
        names = set(os.listdir(directory))
    except OSError as exc:
        raise SourceError(f"cannot list cdc_raw directory {directory}: {exc}") from exc
    found = []
    for name in names:
        parsed = parse_segment_name(name)
        if parsed is None or parsed[1] < from_id:
            continue
        log = directory / name
        idx = idx_path(log)
        if idx.name not in names:
            continue
        index = read_cdc_index(idx)
        if index is None and not idx.exists():
            continue  # deleted since the listing
        found.append(ListedSegment(parsed[1], log, index))
    found.sort(key=lambda s: s.segment_id)
    return found
