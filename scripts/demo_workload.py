"""The demo's workload and report (run by ``scripts/demo``, after the services are up).

1. Drops and recreates the ``ecommerce`` tables and what the destinations hold of them,
   and writes rows into them *before* CDC is turned on (``cdc = false``, then ``ALTER
   TABLE ... WITH cdc = true``): rows the commit log will never carry.
2. Writes ``.demo/cdc.yaml`` (``source.snapshot: initial``), prints the snapshot plan
   (``cdc-app snapshot --dry-run``) and starts ``cdc-app run`` on it, in the background:
   it snapshots the existing rows into every destination while it streams.
3. Writes a small workload: inserts, updates, deletes, a TTL write, an ``ALTER TABLE ADD``
   and writes using the new column, some to the rows the snapshot read.
4. Waits (bounded) until the snapshot is done and every destination has committed
   everything written.
5. Prints each table as Cassandra holds it beside PostgreSQL's mirror and ClickHouse's
   current state (PII columns masked there), and TimescaleDB's changes per operation
   (``SNAPSHOT``: rows the snapshot read, with their write times).
6. Stops the pipeline with SIGTERM.

Reads the ``CDC_TEST_*`` settings ``scripts/services env`` exports.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from cassandra.cluster import Cluster

from cdc_adapters.cassandra.cdc_directory import list_segments

ROOT = Path(__file__).resolve().parent.parent
WORKDIR = ROOT / ".demo"
KS = "ecommerce"

# Why a reason can show up on a machine that ran the demo before: cdc_raw keeps segments
# until a consumer frees them, and mutations of tables dropped since cannot be decoded.
REASON_NOTES = {
    "UNKNOWN_TABLE": "  (mutations of tables dropped before the pipeline started, e.g. by"
    " earlier runs or tests on this node; none on a fresh one)",
}

META = "ecommerce_cdc"  # offsets of the destinations that keep them in their database
PORT = int(os.environ.get("CDC_DEMO_PORT", "18080"))
WAIT_SECONDS = 180

TABLES = {
    "users": "CREATE TABLE ecommerce.users (user_id int PRIMARY KEY, name text, email text, "
    "phone text, country text) WITH cdc = false",
    "orders": "CREATE TABLE ecommerce.orders (user_id int, order_id int, status text, "
    "total decimal, PRIMARY KEY (user_id, order_id)) WITH cdc = false",
    "order_items": "CREATE TABLE ecommerce.order_items (order_id int, sku text, qty int, "
    "tags set<text>, PRIMARY KEY (order_id, sku)) WITH cdc = false",
}


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: run scripts/demo (it exports the services' settings)")
    return value


class Demo:
    def __init__(self) -> None:
        self.hosts = env("CDC_TEST_CASSANDRA_HOSTS")
        self.cdc_raw = Path(env("CDC_TEST_CASSANDRA_CDC_RAW_DIR"))
        self.pg_dsn = env("CDC_TEST_POSTGRES_DSN")
        self.ch_url = env("CDC_TEST_CLICKHOUSE_URL")
        self.ts_dsn = env("CDC_TEST_TIMESCALEDB_DSN")
        host, _, port = self.hosts.split(",")[0].partition(":")
        self.cluster = Cluster([host], port=int(port or 9042))
        self.session = self.cluster.connect()
        self.process: subprocess.Popen[bytes] | None = None

    # -- 1. a clean slate ------------------------------------------------------------

    async def reset(self) -> None:
        step("dropping the demo's previous tables (Cassandra, PostgreSQL, ClickHouse, TimescaleDB)")
        self.session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        for table in TABLES:
            self.session.execute(f"DROP TABLE IF EXISTS {KS}.{table}")
        for dsn in (self.pg_dsn, self.ts_dsn):  # one at a time: TimescaleDB takes one connection
            connection = await asyncpg.connect(dsn)
            try:
                await connection.execute(f"DROP SCHEMA IF EXISTS {KS} CASCADE")
                await connection.execute(f"DROP SCHEMA IF EXISTS {META} CASCADE")
            finally:
                await connection.close()
        self.clickhouse(f"DROP DATABASE IF EXISTS {KS}")
        shutil.rmtree(WORKDIR, ignore_errors=True)
        WORKDIR.mkdir()
        step("creating the ecommerce tables, CDC off for now")
        for ddl in TABLES.values():
            self.session.execute(ddl)

    def existing_rows(self) -> None:
        """Rows written before CDC: only a snapshot can bring them to the destinations."""
        run = self.session.execute
        step("writing rows before CDC is on: 5 users, 5 orders, 5 order items (an hour ago)")
        hour_ago = (time.time_ns() // 1000) - 3_600_000_000
        for uid in range(101, 106):
            run(
                f"INSERT INTO {KS}.users (user_id, name, email, phone, country) "
                "VALUES (%s, %s, %s, %s, %s) USING TIMESTAMP %s",
                (uid, f"Old user {uid}", f"old{uid}@example.com", f"+1 555 09{uid % 100:02}",
                 "SE", hour_ago + uid),
            )  # fmt: skip
            run(
                f"INSERT INTO {KS}.orders (user_id, order_id, status, total) "
                "VALUES (%s, %s, 'delivered', 42.00) USING TIMESTAMP %s",
                (uid, 1000 + uid, hour_ago + uid),
            )
            run(
                f"INSERT INTO {KS}.order_items (order_id, sku, qty, tags) "
                "VALUES (%s, 'OLD-SKU', 2, {'archived'}) USING TIMESTAMP %s",
                (1000 + uid, hour_ago + uid),
            )
        step("turning CDC on: ALTER TABLE ... WITH cdc = true")
        for table in TABLES:
            run(f"ALTER TABLE {KS}.{table} WITH cdc = true")

    # -- 2. the pipeline -------------------------------------------------------------

    def start_pipeline(self) -> None:
        config = {
            "source": {
                "type": "cassandra",
                "partition_id": "demo",
                "tables": [f"{KS}.*"],
                "snapshot": "initial",
            },
            "cassandra": {"hosts": self.hosts.split(","), "cdc_raw_dir": str(self.cdc_raw)},
            "postgres": {"dsn": self.pg_dsn},
            "clickhouse": {"url": self.ch_url},
            "timescaledb": {"dsn": self.ts_dsn},
            "destinations": [
                {"name": "postgres", "type": "postgres", "metadata_schema": META},
                {"name": "clickhouse", "type": "clickhouse"},
                {"name": "timescaledb", "type": "timescaledb", "metadata_schema": META},
            ],
            "offsets": {"type": "sqlite", "path": str(WORKDIR / "offsets.db")},
            "dead_letters": {"type": "jsonl", "path": str(WORKDIR / "dead_letters.jsonl")},
            "schema_history": {"type": "jsonl", "path": str(WORKDIR / "schema_history.jsonl")},
            "masking": {"hmac_key": "demo-only-key"},
            "pipeline": {"max_batch_events": 1000, "max_batch_delay_ms": 100},
            "health": {"port": PORT},
            "logging": {"format": "console", "level": "info"},
        }
        path = WORKDIR / "cdc.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        cdc_app = str(ROOT / ".venv" / "bin" / "cdc-app")
        step(f"the snapshot's plan: `cdc-app snapshot --config {path.relative_to(ROOT)} --dry-run`")
        plan = subprocess.run(
            [cdc_app, "snapshot", "--config", str(path), "--dry-run"],
            capture_output=True,
            text=True,
            check=False,
        )
        print("    " + plan.stdout.strip().replace("\n", "\n    "))
        step(f"starting `cdc-app run --config {path.relative_to(ROOT)}` (log: .demo/pipeline.log)")
        with (WORKDIR / "pipeline.log").open("wb") as log:
            self.process = subprocess.Popen(
                [cdc_app, "run", "--config", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait(lambda: self.status() is not None, 60, "the pipeline's endpoint")

    def wait_snapshot(self) -> None:
        """Until the snapshot ``source.snapshot: initial`` started is done; then what it did."""
        step("the pipeline snapshots the existing rows while it streams")

        def snapshot() -> dict[str, Any] | None:
            try:
                url = f"http://127.0.0.1:{PORT}/snapshot"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    found: dict[str, Any] | None = json.loads(answer.read())["snapshot"]
                    return found
            except (OSError, ValueError, KeyError):
                return None

        self.wait(
            lambda: (snapshot() or {}).get("state") not in (None, "running"),
            WAIT_SECONDS,
            "the snapshot",
        )
        found = snapshot() or {}
        for table in found.get("tables", []):
            written = ", ".join(
                f"{name} {d['written']} events" for name, d in table["destinations"].items()
            )
            print(f"    {table['table']:<22} {table['rows']} rows read -> {written}")
        print(f"    snapshot {found.get('state')}")

    def stop_pipeline(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        step("stopping the pipeline (SIGTERM)")
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        print(f"    exited with {code}")

    def status(self) -> list[dict[str, Any]] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/status", timeout=5) as answer:
                destinations: list[dict[str, Any]] = json.loads(answer.read())["destinations"]
                return destinations
        except (OSError, ValueError, KeyError):
            return None

    def wait(self, done: Any, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if self.process is not None and self.process.poll() is not None:
                sys.exit(f"the pipeline stopped; see {WORKDIR / 'pipeline.log'}")
            if time.monotonic() > deadline:
                sys.exit(f"gave up waiting for {what} after {seconds:.0f} s")
            time.sleep(0.2)

    # -- 3. the workload -------------------------------------------------------------

    def workload(self) -> None:
        run = self.session.execute
        step("writing: 8 users, 12 orders, 20 order items")
        for uid in range(1, 9):
            run(
                f"INSERT INTO {KS}.users (user_id, name, email, phone, country) "
                "VALUES (%s, %s, %s, %s, %s)",
                (uid, f"User {uid}", f"user{uid}@example.com", f"+1 555 01{uid:02}", "NO"),
            )
        for oid in range(1, 13):
            run(
                f"INSERT INTO {KS}.orders (user_id, order_id, status, total) "
                "VALUES (%s, %s, 'new', %s)",
                (1 + oid % 8, oid, 10 * oid + 0.99),
            )
            run(
                f"INSERT INTO {KS}.order_items (order_id, sku, qty, tags) VALUES (%s, %s, 1, %s)",
                (oid, f"SKU-{oid}", {"new"}),
            )
        for oid in range(1, 9):
            run(
                f"INSERT INTO {KS}.order_items (order_id, sku, qty) VALUES (%s, 'GIFT', 1)",
                (oid,),
            )
        step("updating: order statuses, a phone number, item tags (collection add/remove)")
        run(f"UPDATE {KS}.orders SET status = 'returned' WHERE user_id = 101 AND order_id = 1101")
        for oid in range(1, 7):
            run(
                f"UPDATE {KS}.orders SET status = 'shipped' WHERE user_id = %s AND order_id = %s",
                (1 + oid % 8, oid),
            )
        run(f"UPDATE {KS}.users SET phone = '+1 555 0199' WHERE user_id = 3")
        run(
            f"UPDATE {KS}.order_items SET tags = tags + {{'gift'}} "
            "WHERE order_id = 2 AND sku = 'SKU-2'"
        )
        run(
            f"UPDATE {KS}.order_items SET tags = tags - {{'new'}} "
            "WHERE order_id = 3 AND sku = 'SKU-3'"
        )
        step("deleting: a user, an order, and all of order 4's items")
        run(f"DELETE FROM {KS}.users WHERE user_id = 8")
        run(f"DELETE FROM {KS}.orders WHERE user_id = 2 AND order_id = 9")
        run(f"DELETE FROM {KS}.order_items WHERE order_id = 4")
        step("a TTL write: a cart order that expires in a day (destinations do not expire data)")
        run(
            f"INSERT INTO {KS}.orders (user_id, order_id, status, total) "
            "VALUES (1, 99, 'cart', 5.00) USING TTL 86400"
        )
        step("ALTER TABLE users ADD loyalty_tier text, then writes using it")
        run(f"ALTER TABLE {KS}.users ADD loyalty_tier text")
        for uid, tier in ((1, "gold"), (2, "silver"), (9, "bronze")):
            run(
                f"INSERT INTO {KS}.users (user_id, name, email, loyalty_tier) "
                "VALUES (%s, %s, %s, %s)",
                (uid, f"User {uid}", f"user{uid}@example.com", tier),
            )

    # -- 4. caught up ----------------------------------------------------------------

    def wait_caught_up(self) -> None:
        time.sleep(0.5)  # Cassandra records synced writes in the idx every 50 ms here
        segments = [s for s in list_segments(self.cdc_raw) if s.index is not None]
        target = (segments[-1].segment_id, segments[-1].index.offset) if segments else (0, 0)
        step("waiting until every destination has committed all of it")
        started = time.monotonic()

        def caught_up() -> bool:
            destinations = self.status() or []
            done = [
                d
                for d in destinations
                if d["position"] and tuple(map(int, d["position"].split(":")[:2])) >= target
            ]
            line = ", ".join(f"{d['name']} {d['events_processed']} events" for d in destinations)
            print(f"    {time.monotonic() - started:5.1f} s  {line}", flush=True)
            return bool(destinations) and len(done) == len(destinations)

        self.wait(caught_up, WAIT_SECONDS, "the destinations to catch up")

    # -- 5. side by side -------------------------------------------------------------

    async def report(self) -> None:
        pg = await asyncpg.connect(self.pg_dsn)
        try:
            for table in TABLES:
                await self.show(table, pg)
        finally:
            await pg.close()

    async def show(self, table: str, pg: Any) -> None:
        described = sorted(
            self.session.execute(
                "SELECT column_name, kind, position FROM system_schema.columns "
                "WHERE keyspace_name = %s AND table_name = %s",
                (KS, table),
            ),
            key=lambda r: (r.kind != "partition_key", r.kind != "clustering", r.position),
        )
        keys = [r.column_name for r in described if r.kind in ("partition_key", "clustering")]
        values = sorted(r.column_name for r in described if r.column_name not in keys)
        cassandra = {
            _key(r, keys): {c: getattr(r, c) for c in values}
            for r in self.session.execute(f"SELECT * FROM {KS}.{table}")
        }
        mirror = {
            _key(r, keys): {c: r[c] for c in values}
            for r in await pg.fetch(f'SELECT * FROM {KS}."{table}__live"')
        }
        current = {
            _key(r, keys): {c: r.get(c) for c in values}
            for r in self.clickhouse_rows(f"SELECT * FROM {KS}.`{table}`")
        }
        print(f"\n--- {KS}.{table}  ({', '.join(keys)} | {', '.join(values)})")
        print(f"    {'key':<12} {'source':<11} values")
        for key in sorted(set(cassandra) | set(mirror) | set(current)):
            for source, rows in (("cassandra", cassandra), ("postgres", mirror),
                                 ("clickhouse", current)):  # fmt: skip
                row = rows.get(key)
                text = "(absent)" if row is None else " | ".join(_short(row[c]) for c in values)
                print(f"    {key if source == 'cassandra' else '':<12} {source:<11} {text}")

    async def history(self) -> None:
        ts = await asyncpg.connect(self.ts_dsn)
        try:
            print(f"\n--- TimescaleDB change history ({KS}.<table> hypertables)")
            for table in TABLES:
                rows = await ts.fetch(
                    f'SELECT "_cdc_op" AS op, count(*) AS n FROM {KS}."{table}" '
                    "GROUP BY 1 ORDER BY 1"
                )
                counts = ", ".join(f"{r['op']} {r['n']}" for r in rows)
                print(f"    {table:<12} {counts}")
        finally:
            await ts.close()
        letters = WORKDIR / "dead_letters.jsonl"
        reasons = Counter(
            json.loads(line)["reason"]
            for line in (letters.read_text().splitlines() if letters.exists() else [])
        )
        print(f"\n    dead letters: {sum(reasons.values())} (.demo/dead_letters.jsonl)")
        for reason, count in reasons.most_common():
            print(f"      {reason:<20} {count}{REASON_NOTES.get(reason, '')}")

    # -- ClickHouse over HTTP --------------------------------------------------------

    def clickhouse(self, sql: str) -> str:
        request = urllib.request.Request(self.ch_url, data=sql.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            text: str = answer.read().decode()
            return text

    def clickhouse_rows(self, sql: str) -> list[dict[str, Any]]:
        return [
            json.loads(line) for line in self.clickhouse(f"{sql} FORMAT JSONEachRow").splitlines()
        ]


def _key(row: Any, keys: list[str]) -> str:
    """A row's primary key as text, from a driver row, an asyncpg record or a JSON object."""
    values = [getattr(row, k) for k in keys] if hasattr(row, "_fields") else [row[k] for k in keys]
    return "/".join(str(v) for v in values)


def _short(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        value = [f"{k}:{v}" for k, v in value.items()]
    if not isinstance(value, str | bytes) and hasattr(value, "__iter__"):  # the driver's SortedSet
        return "{" + ",".join(sorted(str(v) for v in value)) + "}" if value else "-"
    text = str(value)
    return text if len(text) <= 22 else text[:21] + "…"


async def main() -> None:
    demo = Demo()
    try:
        await demo.reset()
        demo.existing_rows()
        demo.start_pipeline()
        demo.wait_snapshot()
        demo.workload()
        demo.wait_caught_up()
        await demo.report()
    finally:
        demo.stop_pipeline()
        demo.cluster.shutdown()
    await demo.history()  # after the stop: TimescaleDB here serves one connection at a time
    step("done. PII columns (email, phone) are masked ([REDACTED]) in every destination.")


if __name__ == "__main__":
    asyncio.run(main())
