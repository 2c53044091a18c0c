"""A private view of the live ``cdc_raw``: hard links to the segments written from now on.

The source under test reads, and deletes from, the view; the files in the live
directory stay for everyone else's readers. A hard link shares the file, so a linked
segment grows, and its idx (rewritten in place) moves on, exactly as Cassandra writes
them. Only segments Cassandra may still write (no ``COMPLETED`` idx yet) and newer ones
are linked, so the view holds this test's writes and little else.
"""

from __future__ import annotations

import os
from pathlib import Path

from cdc_adapters.cassandra.cdc_directory import idx_path
from cdc_adapters.cassandra.segment import parse_segment_name, read_cdc_index


class CdcRawView:
    def __init__(self, live: Path, view: Path) -> None:
        self.live = live
        self.view = view
        view.mkdir(parents=True, exist_ok=True)
        completed, open_ids = [0], []
        for log in live.glob("CommitLog-*.log"):
            parsed = parse_segment_name(log.name)
            if parsed is None:
                continue
            index = read_cdc_index(idx_path(log))
            (completed if index is not None and index.completed else open_ids).append(parsed[1])
        newest_completed = max(completed)
        self.from_id = min(
            (i for i in open_ids if i > newest_completed), default=newest_completed + 1
        )
        self.gone: set[str] = set()
        self.sync()

    def sync(self) -> None:
        """Link what appeared in the live directory since the last call."""
        for name in os.listdir(self.live):
            parsed = parse_segment_name(name.replace("_cdc.idx", ".log"))
            if parsed is None or parsed[1] < self.from_id or name in self.gone:
                continue
            target = self.view / name
            if target.exists():
                continue
            try:
                os.link(self.live / name, target)
            except FileNotFoundError:
                continue

    def forget_deleted(self) -> None:
        """Remember what the source deleted from the view, so it is not linked again."""
        for name in os.listdir(self.live):
            parsed = parse_segment_name(name.replace("_cdc.idx", ".log"))
            if parsed is not None and parsed[1] >= self.from_id and not (self.view / name).exists():
                self.gone.add(name)
