"""The collector's settings for a long-running pipeline.

CPython's cyclic collector runs a young collection every 700 net allocations and a full
one every hundred of those (when enough survived). A streaming batch allocates millions
of short-lived objects (events, cells, rows to encode) while the decoded-entry cache and
each destination's batch keep a few hundred thousand alive, so with the defaults the
collector traversed that live set thousands of times a minute: profiled on the
end-to-end bench's drain, 9.1 s of 25.6 s of CPU (35%) went to collections that found
almost nothing, because nearly everything the pipeline frees is freed by reference
counting. Larger thresholds keep the collector for what it is for (cycles, which
asyncio's exceptions and tracebacks do create) at a fraction of the cost; freezing what
start-up built (modules, the container, compiled plans) takes it out of every full
collection for the life of the process. See ADR 0012.
"""

from __future__ import annotations

import gc

__all__ = ["STREAMING_THRESHOLDS", "tune_for_streaming"]

STREAMING_THRESHOLDS = (100_000, 50, 100)
"""Young collections every 100,000 net allocations (not 700); the middle and old
generations every 50 and 100 of the previous one's."""


def tune_for_streaming() -> None:
    """Call once start-up is done, before the first batch."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*STREAMING_THRESHOLDS)
