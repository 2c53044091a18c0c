"""Whether processes a test started, directly or not, have ended."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def ended(pids: Iterable[int]) -> bool:
    """Every one gone, or a zombie: a zombie ran its last instruction, and only its
    parent (init, once the parent died) may reap it."""
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        if "State:\tZ" not in status:
            return False
    return True
