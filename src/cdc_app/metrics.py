"""Every Prometheus metric the pipeline exports, defined in one place.

The metrics live in a registry of their own, not prometheus_client's global one, so
two pipelines in one process (tests, an embedding service) never share counters and
nothing is registered at import time. Labels are table, destination and reason names
only, never a value from an event.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cdc_domain.ports import SourceStorage

__all__ = ["Metrics"]

_BATCH_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The pipeline's metrics and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.events_read = Counter(
            "cdc_events_read",
            "Events read from the source (each event once, however many destinations read it).",
            ["table"],
            registry=registry,
        )
        self.events_written = Counter(
            "cdc_events_written",
            "Events a destination confirmed writing.",
            ["table", "destination"],
            registry=registry,
        )
        self.replica_copies_absorbed = Counter(
            "cdc_replica_copies_absorbed",
            "Events a destination that keeps one record per Cassandra write already held: "
            "another node's copy of the write (with replication factor 3, each write is "
            "read by up to three agents) or a re-delivery. Counted in cdc_events_written "
            "too; this part of them was written nowhere.",
            ["destination", "table"],
            registry=registry,
        )
        self.events_dead_lettered = Counter(
            "cdc_events_dead_lettered",
            "Events (or undecodable entries) sent to the dead letter queue.",
            ["table", "destination", "reason"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "cdc_batch_duration_seconds",
            "Time to read, route, write and commit one batch for one destination.",
            ["destination"],
            buckets=_BATCH_SECONDS,
            registry=registry,
        )
        self.retries = Counter(
            "cdc_batch_retries",
            "Failed batches of a destination by failure class: transient ones are retried "
            "soon with backoff; a permanent one stops the destination until its long retry "
            "or the next start.",
            ["destination", "class"],
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "cdc_lag_seconds",
            "End-to-end lag: now minus the write time of the last event delivered, "
            "0 when the destination has delivered everything the source had.",
            ["destination"],
            registry=registry,
        )
        self.destination_failing = Gauge(
            "cdc_destination_failing_batches",
            "Consecutive failed batches of a destination (0 when its last batch succeeded).",
            ["destination"],
            registry=registry,
        )
        self.schema_changes = Counter(
            "cdc_schema_changes_applied",
            "Schema changes a destination applied.",
            ["destination", "table", "kind"],
            registry=registry,
        )
        self.cdc_raw_segments = Gauge(
            "cdc_raw_segments_pending",
            "Commit log segments in cdc_raw not yet freed by every destination.",
            registry=registry,
        )
        self.cdc_raw_bytes = Gauge(
            "cdc_raw_bytes",
            "Bytes used in cdc_raw; Cassandra rejects writes to CDC tables once it is full.",
            registry=registry,
        )
        self.cdc_raw_capacity_bytes = Gauge(
            "cdc_raw_capacity_bytes",
            "The node's cdc_total_space, which cdc_raw_bytes is measured against.",
            registry=registry,
        )

        self.snapshot_running = Gauge(
            "cdc_snapshot_running",
            "1 while a snapshot runs in this agent.",
            registry=registry,
        )
        self.snapshot_rows = Counter(
            "cdc_snapshot_rows_read",
            "Rows a snapshot read from Cassandra, by table.",
            ["table"],
            registry=registry,
        )
        self.snapshot_events = Counter(
            "cdc_snapshot_events_written",
            "Snapshot events a destination confirmed writing (streamed events are "
            "cdc_events_written).",
            ["table", "destination"],
            registry=registry,
        )
        self.snapshot_ranges = Gauge(
            "cdc_snapshot_ranges",
            "Token ranges of the running (or latest) snapshot, by table and state: "
            "planned (to read), done, failed (most failed in one destination).",
            ["table", "state"],
            registry=registry,
        )
        self.snapshot_rows_estimated = Gauge(
            "cdc_snapshot_rows_estimated",
            "Partitions the node estimates in the ranges the snapshot reads "
            "(system.size_estimates).",
            ["table"],
            registry=registry,
        )

    def record_cdc_raw(self, storage: SourceStorage) -> None:
        self.cdc_raw_segments.set(storage.files)
        self.cdc_raw_bytes.set(storage.used_bytes)
        self.cdc_raw_capacity_bytes.set(storage.total_bytes)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
