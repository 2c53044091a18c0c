"""Decode throughput of the commit log reader on one core, against a 100k mutations/s target.

    eval "$(scripts/services env)"
    .venv/bin/python bench/decode.py --build .cache/bench-corpus   # write >= 64 MiB, copy it
    .venv/bin/python bench/decode.py .cache/bench-corpus           # measure an existing corpus

Building inserts single-partition rows with five regular columns into a fresh CDC table
through cassandra-driver (many async requests in flight), then copies the cdc_raw segments
holding them, each truncated to its ``_cdc.idx`` offset, plus the table id. Measuring runs
four passes over the corpus held in memory: framing only (sections, entry CRCs), framing +
mutation decoding, the whole path to ChangeEvents, and that path as the change source runs
it (``EntryDecoder``: schema catalog, table filter, ``DecodedEntry``); it prints
mutations/s and MiB/s for each, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from cdc_adapters.cassandra.entry_decoder import EntryDecoder
from cdc_adapters.cassandra.event_mapper import EventMapper
from cdc_adapters.cassandra.mutation import MutationDecoder, UnknownTableError
from cdc_adapters.cassandra.schema_catalog import SchemaCatalog
from cdc_adapters.cassandra.segment import (
    CommitLogEntry,
    iter_entries,
    parse_segment_name,
    read_cdc_index,
)
from cdc_domain.cql_types import parse_cql_type
from cdc_domain.schema import ColumnDefinition, ColumnKind, TableSchema

TARGET = 100_000
KEYSPACE = "bench_decode"
TABLE = "events"
COLUMNS = [
    ("id", "bigint", ColumnKind.PARTITION_KEY),
    ("name", "text", ColumnKind.REGULAR),
    ("amount", "int", ColumnKind.REGULAR),
    ("price", "double", ColumnKind.REGULAR),
    ("created", "timestamp", ColumnKind.REGULAR),
    ("ref", "uuid", ColumnKind.REGULAR),
]


def bench_schema(table_id: uuid.UUID) -> TableSchema:
    return TableSchema(
        keyspace=KEYSPACE,
        table=TABLE,
        table_id=table_id,
        columns=tuple(
            ColumnDefinition(name, parse_cql_type(cql), kind, 0 if kind.name != "REGULAR" else -1)
            for name, cql, kind in COLUMNS
        ),
    )


def build(out: Path, target_mib: int, concurrency: int) -> None:
    from cassandra.cluster import Cluster
    from cassandra.concurrent import execute_concurrent_with_args

    host, _, port = os.environ["CDC_TEST_CASSANDRA_HOSTS"].split(",")[0].partition(":")
    cdc_raw = Path(os.environ["CDC_TEST_CASSANDRA_CDC_RAW_DIR"])
    cluster = Cluster([host], port=int(port or 9042))
    session = cluster.connect()
    session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}")
    session.execute(
        f"CREATE KEYSPACE {KEYSPACE} WITH replication ="
        " {'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.execute(
        f"CREATE TABLE {KEYSPACE}.{TABLE} (id bigint PRIMARY KEY, name text, amount int,"
        " price double, created timestamp, ref uuid) WITH cdc = true"
    )
    table_id = session.execute(
        "SELECT id FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
        (KEYSPACE, TABLE),
    ).one()[0]
    insert = session.prepare(
        f"INSERT INTO {KEYSPACE}.{TABLE} (id, name, amount, price, created, ref)"
        " VALUES (?, ?, ?, ?, ?, ?)"
    )
    existing = {p.name for p in cdc_raw.glob("CommitLog-*.log")}
    now = dt.datetime.now(dt.UTC)
    written = 0
    batch = 20_000
    started = time.monotonic()
    # ~110 bytes of commit log per insert; stop once the new segments hold enough.
    while written * 110 < target_mib * 2**20:
        args = [
            (written + i, f"customer-{written + i}", i, i * 0.5, now, uuid.uuid4())
            for i in range(batch)
        ]
        execute_concurrent_with_args(session, insert, args, concurrency=concurrency)
        written += batch
        print(f"\r{written} inserts, {time.monotonic() - started:.0f}s", end="", file=sys.stderr)
    print(file=sys.stderr)
    cluster.shutdown()
    time.sleep(1)
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in sorted(cdc_raw.glob("CommitLog-*.log")):
        index = read_cdc_index(path.with_name(path.stem + "_cdc.idx"))
        if path.name in existing or index is None:
            continue
        data = path.read_bytes()[: index.offset]
        if table_id.bytes not in data:
            continue
        (out / path.name).write_bytes(data)
        total += len(data)
    (out / "table_id").write_text(str(table_id))
    print(f"corpus: {total / 2**20:.1f} MiB in {out}", file=sys.stderr)


def _measure(
    name: str,
    segments: list[tuple[int, bytes]],
    consume: Callable[[CommitLogEntry], int],
    repeat: int,
) -> None:
    """The best of ``repeat`` passes: on a shared machine the others only add noise.

    Rates are per CPU second of this process (what one core gives when it is ours alone);
    the wall time of the best pass is printed too, since on a busy machine the two differ.
    """
    size = sum(len(d) for _, d in segments)
    best_cpu = best_wall = float("inf")
    mutations = 0
    for _ in range(repeat):
        mutations = 0
        wall = time.perf_counter()
        cpu = time.process_time()
        for _, data in segments:
            for entry in iter_entries(data):
                if isinstance(entry, CommitLogEntry):
                    mutations += consume(entry)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    rate = mutations / best_cpu
    print(
        f"{name:<20} {mutations:>7} mutations in {best_cpu:5.2f}s CPU ({best_wall:5.2f}s wall):"
        f" {rate:>9,.0f} mutations/s, {size / 2**20 / best_cpu:5.1f} MiB/s,"
        f" {rate / TARGET:5.2f}x the 100k/s target"
    )


def measure(corpus: Path, repeat: int) -> None:
    table_id = uuid.UUID((corpus / "table_id").read_text().strip())
    schema = bench_schema(table_id)
    schemas = {table_id: schema}
    segments = []
    for path in sorted(corpus.glob("CommitLog-*.log")):
        parsed = parse_segment_name(path.name)
        if parsed is not None:
            segments.append((parsed[1], path.read_bytes()))
    size = sum(len(d) for _, d in segments)
    print(
        f"corpus: {len(segments)} segments, {size / 2**20:.1f} MiB, python {sys.version.split()[0]}"
    )
    decoder = MutationDecoder(schemas.get)
    mapper = EventMapper()
    captured = dt.datetime.now(dt.UTC)
    skipped = [0]

    raw_id = table_id.bytes

    def frame_only(entry: CommitLogEntry) -> int:
        return 1 if raw_id in entry.mutation else 0

    def decode(entry: CommitLogEntry) -> int:
        try:
            return len(decoder.decode(entry.mutation, entry.messaging_version))
        except UnknownTableError:
            skipped[0] += 1
            return 0

    def to_events(entry: CommitLogEntry) -> int:
        try:
            updates = decoder.decode(entry.mutation, entry.messaging_version)
        except UnknownTableError:
            return 0
        mapper.map_entry(updates, entry.segment_id, entry.offset, captured)
        return len(updates)

    source_decoder = EntryDecoder(SchemaCatalog(schemas=[schema]))

    def as_source(entry: CommitLogEntry) -> int:
        decoded = source_decoder.decode(entry, captured)
        return 1 if decoded.events else 0

    _measure("framing + CRC", segments, frame_only, repeat)
    _measure("+ mutation decode", segments, decode, repeat)
    _measure("+ ChangeEvents", segments, to_events, repeat)
    _measure("as the source does", segments, as_source, repeat)
    print(f"entries of other tables (unknown ids, skipped): {skipped[0] // repeat}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak / 1024:.0f} MiB (corpus held in memory: {size / 2**20:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--build", action="store_true", help="write a new corpus first")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="passes per step; the best counts")
    args = parser.parse_args()
    if args.build:
        shutil.rmtree(args.corpus, ignore_errors=True)
        build(args.corpus, args.mib, args.concurrency)
    measure(args.corpus, args.repeat)


if __name__ == "__main__":
    main()
