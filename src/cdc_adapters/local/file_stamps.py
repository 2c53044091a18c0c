"""Noticing that another process changed a file this one keeps in memory."""

from __future__ import annotations

import os
from pathlib import Path

FileStamp = tuple[int, int] | None


def file_stamp(path: Path) -> FileStamp:
    """Modification time and size: they change whenever a line is appended."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_mtime_ns, status.st_size)
