"""Tables that already hold rows when CDC is turned on, and a workload that changes some
of the same rows while a snapshot reads them.

Three tables cover every column kind the snapshot reads: scalars, a decimal and a
timestamp, a set, a map and a list, a non-frozen and a frozen UDT, a frozen list; static
columns and static-only partitions; a composite partition key and a DESC clustering
column; TTLs; rows written by several statements at different write times (their cells
carry different ``WRITETIME``s), rows with keys only, rows made by UPDATE alone.

The tables are created with ``cdc = false`` and loaded, then given ``cdc = true``:
the commit log the pipeline reads holds none of the preloaded rows, as when a user
points the product at tables that have held data for years.

While the snapshot runs (:meth:`SnapshotWorkload.during`), the workload updates and
deletes existing rows and partitions, rewrites whole collections, writes late
``USING TIMESTAMP`` values and new rows. Element-level collection changes wait until
the snapshot is done (:meth:`SnapshotWorkload.after`): a snapshot delivers a
collection's elements out of order with the stream by nature, and the PostgreSQL
mirror's out-of-order element rules are approximate (ADR 0004), which the other
destinations' are not. List elements are never removed from preloaded rows: their
cells' identities are not visible to CQL (ADR 0011).
"""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args

from tests.integration.e2e.workload import Op

TTL = 86_400
WORDS = ("red", "green", "blue", "amber", "teal", "plum", "jade", "onyx", "rose", "sand")
ACCOUNTS_PER_CUSTOMER = 10
SAMPLES_PER_PARTITION = 100
STATIC_ONLY = 200
NEW_IDS = 10_000_000

TYPES = "CREATE TYPE {ks}.addr (street text, zip int)"
TABLES = {
    "people": """CREATE TABLE {ks}.people (id int PRIMARY KEY, name text, email text,
        age int, score double, joined timestamp, balance decimal, tags set<text>,
        prefs map<text, int>, visits list<int>, home addr, office frozen<addr>,
        flags frozen<list<int>>) WITH cdc = false""",
    "accounts": """CREATE TABLE {ks}.accounts (customer int, account int, status text,
        amount double, note text, owner_email text STATIC, tier text STATIC,
        PRIMARY KEY (customer, account)) WITH cdc = false""",
    "samples": """CREATE TABLE {ks}.samples (device text, day int, ts timestamp, seq int,
        value double, unit text, labels list<text>, attrs map<text, text>,
        PRIMARY KEY ((device, day), ts, seq))
        WITH CLUSTERING ORDER BY (ts DESC, seq ASC) AND cdc = false""",
}
EPOCH_MS = 1_767_225_600_000  # 2026-01-01
PEOPLE = "id, name, email, age, score, joined, balance, tags, prefs, visits, home, office, flags"


def _micros() -> int:
    return time.time_ns() // 1000


class Preload:
    """``rows`` rows (40% people, 40% accounts, 20% samples) written before CDC."""

    def __init__(self, ks: str, rows: int, seed: int = 1) -> None:
        self.ks = ks
        self.rng = random.Random(seed)
        self.people = rows * 4 // 10
        self.customers = rows * 4 // 10 // ACCOUNTS_PER_CUSTOMER
        self.partitions = (rows - self.people - self.customers * ACCOUNTS_PER_CUSTOMER) // (
            SAMPLES_PER_PARTITION
        )
        self.base = _micros() - 3_600_000_000  # an hour ago: every write here is older

    def create(self, session: Any) -> None:
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {self.ks} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(TYPES.format(ks=self.ks))
        for ddl in TABLES.values():
            session.execute(ddl.format(ks=self.ks))

    def load(self, session: Any) -> None:
        """Write every row, then turn CDC on."""
        for cql, rows in self._statements():
            prepared = session.prepare(cql)
            for start in range(0, len(rows), 5000):
                execute_concurrent_with_args(
                    session, prepared, rows[start : start + 5000], concurrency=128
                )
        for table in TABLES:
            session.execute(f"ALTER TABLE {self.ks}.{table} WITH cdc = true")

    def _statements(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        ks, rng, base = self.ks, self.rng, self.base
        full, ttl, keys_only, update_only, later = [], [], [], [], []
        for i in range(self.people):
            kind = rng.random()
            row = _person(rng, i)
            if kind < 0.05:
                keys_only.append((i, base + i))
            elif kind < 0.10:
                update_only.append((f"only {i}", rng.randrange(18, 90), base + i, i))
            elif kind < 0.20:
                ttl.append((*row, base + i))
            else:
                full.append((*row, base + i))
                if kind > 0.7:  # a later partial update: cells of other write times
                    later.append(
                        (base + 10**9 + i, rng.randrange(18, 90), {"late"}, rng.randrange(9),
                         rng.randrange(10**5), [i % 100], i)
                    )  # fmt: skip
        columns = (
            "id, name, email, age, score, joined, balance, tags, prefs, visits, home, office, flags"
        )
        values = ", ".join("?" * 13)
        accounts, statics, static_only = [], [], []
        for c in range(self.customers):
            statics.append((c, f"owner{c}@example.com", rng.choice(["gold", "silver"]), base + c))
            for a in range(ACCOUNTS_PER_CUSTOMER):
                accounts.append(
                    (c, a, rng.choice(["open", "frozen"]), rng.random() * 1000,
                     f"note {a}" if rng.random() < 0.5 else None, base + c)
                )  # fmt: skip
        for c in range(STATIC_ONLY):
            static_only.append((NEW_IDS + c, f"lonely{c}@example.com", "bronze", base + c))
        samples, sample_ttl = [], []
        for p in range(self.partitions):
            device, day = f"d{p // 2}", p % 2
            for n in range(SAMPLES_PER_PARTITION):
                row = (
                    device, day, EPOCH_MS + n * 1000, n % 3, rng.random() * 40, "C",
                    [rng.choice(WORDS)], {"site": rng.choice(WORDS)}, base + p,
                )  # fmt: skip
                (sample_ttl if n % 10 == 0 else samples).append(row)
        sample_cql = (
            f"INSERT INTO {ks}.samples (device, day, ts, seq, value, unit, labels, attrs) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        return [
            (f"INSERT INTO {ks}.people ({columns}) VALUES ({values}) USING TIMESTAMP ?", full),
            (
                f"INSERT INTO {ks}.people ({columns}) VALUES ({values}) "
                f"USING TIMESTAMP ? AND TTL {TTL}",
                ttl,
            ),
            (f"INSERT INTO {ks}.people (id) VALUES (?) USING TIMESTAMP ?", keys_only),
            (
                f"UPDATE {ks}.people USING TIMESTAMP ? SET name = ?, age = ? WHERE id = ?",
                [(ts, name, age, i) for name, age, ts, i in update_only],
            ),
            (
                f"UPDATE {ks}.people USING TIMESTAMP ? SET age = ?, tags = tags + ?, "
                "prefs['k'] = ?, home.zip = ?, visits = visits + ? WHERE id = ?",
                later,
            ),
            (
                f"INSERT INTO {ks}.accounts (customer, account, status, amount, note) "
                "VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
                accounts,
            ),
            (
                f"INSERT INTO {ks}.accounts (customer, owner_email, tier) VALUES (?, ?, ?) "
                "USING TIMESTAMP ?",
                statics + static_only,
            ),
            (f"{sample_cql} USING TIMESTAMP ?", samples),
            (f"{sample_cql} USING TIMESTAMP ? AND TTL {TTL}", sample_ttl),
        ]


def _person(rng: random.Random, i: int) -> tuple[Any, ...]:
    """A whole row of people; UDTs bound as tuples of their fields."""
    return (
        i, f"person {i}", f"p{i}@example.com", rng.randrange(18, 90), rng.random() * 100,
        EPOCH_MS - rng.randrange(10**10), Decimal(rng.randrange(10**6)) / 100,
        set(rng.sample(WORDS, 2)), {rng.choice(WORDS): rng.randrange(9)},
        [rng.randrange(100), rng.randrange(100)],
        (f"{i} main st", rng.randrange(10**5)), ("office", i % 1000), [i % 7, i % 11],
    )  # fmt: skip


class SnapshotWorkload:
    """Waves of statements on the preloaded rows (and new ones): :meth:`during` while
    the snapshot runs, :meth:`after` once it is done (element-level changes too)."""

    def __init__(self, preload: Preload, seed: int = 11) -> None:
        self.ks = preload.ks
        self.preload = preload
        self.rng = random.Random(seed)
        self.new = 0
        # Preloaded people deleted and not written whole again: element changes there
        # would fall under ADR 0004's approximation (elements after a row deletion).
        self.deleted: set[int] = set()

    def during(self, size: int = 60) -> list[Op]:
        ops: list[Op] = []
        for _ in range(size):
            ops.append(self.rng.choice((self._person, self._account, self._sample))())
        return ops

    def after(self, size: int = 60) -> list[Op]:
        return [self._element() for _ in range(size // 2)] + self.during(size // 2)

    def _person(self) -> Op:
        rng, ks = self.rng, self.ks
        pid = rng.randrange(self.preload.people)
        kind = rng.choice(
            ["update", "update", "late", "delete_cell", "delete", "insert", "overwrite",
             "ttl", "new", "udt"]
        )  # fmt: skip
        if kind == "update":
            return "single", [(
                f"UPDATE {ks}.people SET name = ?, age = ?, score = ? WHERE id = ?",
                (f"renamed {pid}", rng.randrange(18, 90), rng.random(), pid),
            )]  # fmt: skip
        if kind == "late":  # older than what the row holds: must lose everywhere
            return "single", [(
                f"UPDATE {ks}.people USING TIMESTAMP ? SET name = ? WHERE id = ?",
                (self.preload.base - 1_000_000, "too late", pid),
            )]  # fmt: skip
        if kind == "delete_cell":
            return "single", [(f"DELETE email, score FROM {ks}.people WHERE id = ?", (pid,))]
        if kind == "delete":
            self.deleted.add(pid)
            return "single", [(f"DELETE FROM {ks}.people WHERE id = ?", (pid,))]
        if kind in ("insert", "new"):
            if kind == "new":
                self.new += 1
                pid = NEW_IDS + self.new
            self.deleted.discard(pid)
            row = _person(rng, pid)
            return "single", [(
                f"INSERT INTO {ks}.people ({PEOPLE}) VALUES ({', '.join('?' * 13)})", row,
            )]  # fmt: skip
        if kind == "overwrite":
            return "single", [(
                f"UPDATE {ks}.people SET tags = ?, prefs = ?, visits = ? WHERE id = ?",
                (set(rng.sample(WORDS, 3)), {rng.choice(WORDS): 1}, [rng.randrange(9)], pid),
            )]  # fmt: skip
        if kind == "udt":
            return "single", [(
                f"UPDATE {ks}.people SET home = ? WHERE id = ?",
                (("moved", rng.randrange(10**5)), pid),
            )]  # fmt: skip
        return "single", [(
            f"UPDATE {ks}.people USING TTL {TTL} SET age = ? WHERE id = ?",
            (rng.randrange(18, 90), pid),
        )]  # fmt: skip

    def _account(self) -> Op:
        rng, ks = self.rng, self.ks
        customer = rng.randrange(self.preload.customers)
        account = rng.randrange(ACCOUNTS_PER_CUSTOMER + 3)
        kind = rng.choice(
            ["update", "update", "insert", "delete_row", "delete_range", "static", "note",
             "static_only", "delete_partition"]
        )  # fmt: skip
        if kind == "update":
            return "single", [(
                f"UPDATE {ks}.accounts SET status = ?, amount = ? WHERE customer = ? "
                "AND account = ?",
                ("updated", rng.random() * 1000, customer, account),
            )]  # fmt: skip
        if kind == "insert":
            return "single", [(
                f"INSERT INTO {ks}.accounts (customer, account, status, amount) "
                "VALUES (?, ?, ?, ?)",
                (customer, account, "new", rng.random()),
            )]  # fmt: skip
        if kind == "delete_row":
            return "single", [(
                f"DELETE FROM {ks}.accounts WHERE customer = ? AND account = ?",
                (customer, account),
            )]  # fmt: skip
        if kind == "delete_range":
            return "single", [(
                f"DELETE FROM {ks}.accounts WHERE customer = ? AND account >= ? AND account < ?",
                (customer, account, account + rng.randrange(1, 4)),
            )]  # fmt: skip
        if kind == "static":
            return "single", [(
                f"UPDATE {ks}.accounts SET tier = ? WHERE customer = ?",
                (rng.choice(["gold", "silver", "bronze"]), customer),
            )]  # fmt: skip
        if kind == "note":
            return "single", [(
                f"DELETE note FROM {ks}.accounts WHERE customer = ? AND account = ?",
                (customer, account),
            )]  # fmt: skip
        if kind == "static_only":
            return "single", [(
                f"UPDATE {ks}.accounts SET tier = ? WHERE customer = ?",
                ("platinum", NEW_IDS + rng.randrange(STATIC_ONLY)),
            )]  # fmt: skip
        return "single", [(f"DELETE FROM {ks}.accounts WHERE customer = ?", (customer,))]

    def _sample(self) -> Op:
        rng, ks = self.rng, self.ks
        partition = rng.randrange(max(self.preload.partitions, 1))
        key = (f"d{partition // 2}", partition % 2)
        n = rng.randrange(SAMPLES_PER_PARTITION + 5)
        ts, seq = EPOCH_MS + n * 1000, n % 3
        kind = rng.choice(["update", "update", "insert", "delete_row", "ttl"])
        if kind == "update":
            return "single", [(
                f"UPDATE {ks}.samples SET value = ? WHERE device = ? AND day = ? AND ts = ? "
                "AND seq = ?",
                (rng.random() * 40, *key, ts, seq),
            )]  # fmt: skip
        if kind == "delete_row":
            return "single", [(
                f"DELETE FROM {ks}.samples WHERE device = ? AND day = ? AND ts = ? AND seq = ?",
                (*key, ts, seq),
            )]  # fmt: skip
        using = f" USING TTL {TTL}" if kind == "ttl" else ""
        return "single", [(
            f"INSERT INTO {ks}.samples (device, day, ts, seq, value, unit, labels, attrs) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?){using}",
            (*key, ts, seq, rng.random(), "F", [rng.choice(WORDS)], {"site": "new"}),
        )]  # fmt: skip

    def _element(self) -> Op:
        """An element-level change to a preloaded row not deleted since: set and map
        elements added and removed, list appends, a UDT field."""
        rng, ks = self.rng, self.ks
        pid = rng.randrange(self.preload.people)
        while pid in self.deleted:
            pid = rng.randrange(self.preload.people)
        word = rng.choice(WORDS)
        where = "WHERE id = ?"
        statement = rng.choice(
            [
                (f"UPDATE {ks}.people SET tags = tags + ? {where}", ({word}, pid)),
                (f"UPDATE {ks}.people SET tags = tags - ? {where}", ({word}, pid)),
                (f"UPDATE {ks}.people SET prefs[?] = ? {where}", (word, 5, pid)),
                (f"DELETE prefs[?] FROM {ks}.people {where}", (word, pid)),
                (f"UPDATE {ks}.people SET visits = visits + ? {where}", ([7], pid)),
                (f"UPDATE {ks}.people SET home.zip = ? {where}", (rng.randrange(99), pid)),
            ]
        )
        return "single", [statement]
