"""A mixed Cassandra workload covering every kind of change CDC has to carry.

Four tables (plus a fifth created mid-run when asked): simple and composite partition
keys, a DESC clustering column, static columns, sets, maps and lists, PII columns. The
statements: inserts, partial updates, ``USING TTL`` and ``USING TIMESTAMP`` writes,
deletions of rows, partitions, clustering ranges, single columns and map elements,
set/list/map element changes, logged and unlogged batches, and LWTs.

Statements run in *waves*: concurrently within a wave (``execute_concurrent``), waves one
after the other, and a wave touches each partition at most once. So changes to one
partition reach the commit log in their timestamp order, except the deliberately late
``USING TIMESTAMP`` writes, which only touch scalar columns. Element changes go only to
rows whose collections were overwritten since their last deletion. Both rules keep
clear of the reorderings the PostgreSQL mirror documents as approximate (ADR 0004:
element changes arriving out of order, elements added after a row deletion), so every
destination must end exactly equal to Cassandra.

TTLs are a day: the destinations do not expire data (see docs/benchmarks.md, End to end),
so a value must not expire between the write and the comparison.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

TTL = 86_400
USERS, CUSTOMERS, ORDERS, DEVICES, DAYS, LWT_USERS = 1200, 250, 250, 40, 3, 200
LWT_BASE = 1_000_000
READING_EPOCH_MS = 1_767_225_600_000  # 2026-01-01

TABLES = {
    "users": """CREATE TABLE {ks}.users (
        id int PRIMARY KEY, name text, email text, phone text, age int, score double,
        active boolean, joined timestamp, tags set<text>, prefs map<text, int>,
        visits list<int>) WITH cdc = true""",
    "orders": """CREATE TABLE {ks}.orders (
        customer int, order_id int, status text, amount double, note text,
        customer_email text STATIC, tier text STATIC,
        PRIMARY KEY (customer, order_id)) WITH cdc = true""",
    "items": """CREATE TABLE {ks}.items (
        order_id int, line int, sku text, qty int, attrs map<text, text>,
        PRIMARY KEY (order_id, line)) WITH CLUSTERING ORDER BY (line DESC) AND cdc = true""",
    "readings": """CREATE TABLE {ks}.readings (
        device text, day int, ts timestamp, seq int, value double, unit text,
        labels list<text>, PRIMARY KEY ((device, day), ts, seq)) WITH cdc = true""",
}
REVIEWS = """CREATE TABLE {ks}.reviews (
    product int, reviewer int, stars int, body text, email text,
    PRIMARY KEY (product, reviewer)) WITH cdc = true"""

Statement = tuple[str, tuple[Any, ...]]
Op = tuple[str, list[Statement]]
"""One unit of a wave: ``single``, ``unlogged`` or ``logged`` and its statements."""

WORDS = ("red", "green", "blue", "amber", "teal", "plum", "jade", "onyx", "rose", "sand")


class Workload:
    """Generates waves of statements for keyspace ``ks``, remembering just enough about
    each row to keep to the rules in the module docstring."""

    def __init__(self, ks: str, seed: int = 7) -> None:
        self.ks = ks
        self.rng = random.Random(seed)
        # Rows whose collections may take element changes; absent = deleted since the
        # last overwrite. Rows never written are clean: nothing can hide under them.
        self._dirty: set[tuple[Any, ...]] = set()
        self.users_loyalty = False  # ALTER TABLE users ADD loyalty int
        self.orders_note = True  # ALTER TABLE orders DROP note
        self.reviews = False  # CREATE TABLE reviews mid-run

    # -- waves -----------------------------------------------------------------------

    def wave(
        self, users: int = 60, orders: int = 25, items: int = 25, readings: int = 20
    ) -> list[Op]:
        rng = self.rng
        ops: list[Op] = []
        user_ops = [self._user(i) for i in rng.sample(range(1, USERS + 1), users)]
        order_ops = [self._order(c) for c in rng.sample(range(1, CUSTOMERS + 1), orders)]
        # Logged batches across tables: a user's change and a customer's, atomically.
        for _ in range(3):
            (_, first), (_, second) = user_ops.pop(), order_ops.pop()
            ops.append(("logged", first + second))
        ops += user_ops + order_ops
        ops += [self._item(o) for o in rng.sample(range(1, ORDERS + 1), items)]
        partitions = [(d, day) for d in range(DEVICES) for day in range(1, DAYS + 1)]
        ops += [self._reading(*p) for p in rng.sample(partitions, readings)]
        ops += [self._lwt(LWT_BASE + i) for i in rng.sample(range(LWT_USERS), 5)]
        if self.reviews:
            ops += [self._review(p) for p in rng.sample(range(1, 101), 15)]
        return ops

    def _clean(self, *key: Any) -> bool:
        return key not in self._dirty

    def _user(self, uid: int) -> Op:
        rng, ks = self.rng, self.ks
        kind = rng.choices(
            ["insert", "insert_ttl", "insert_ts", "update", "update_ttl", "update_ts", "delete",
             "delete_cols", "set_add", "set_remove", "map_put", "map_remove", "list_append",
             "list_prepend", "batch"],
            [25, 5, 4, 15, 5, 3, 6, 5, 6, 4, 5, 2, 4, 1, 3],
        )[0]  # fmt: skip
        if kind in ("set_add", "set_remove", "map_put", "map_remove", "list_append",
                    "list_prepend", "batch") and not self._clean("u", uid):  # fmt: skip
            kind = "insert"
        now = _micros()
        if kind in ("insert", "insert_ttl"):
            self._dirty.discard(("u", uid))
            using = f" USING TTL {TTL}" if kind == "insert_ttl" else ""
            extra, extra_value = self._loyalty()
            return "single", [(
                f"INSERT INTO {ks}.users (id, name, email, phone, age, score, active, joined, "
                f"tags, prefs, visits{extra}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
                f"{', ?' if extra else ''}){using}",
                (uid, f"user {uid}-{rng.randrange(1000)}", f"u{uid}@example.com",
                 f"+47 {rng.randrange(10**7, 10**8)}", rng.randrange(18, 90),
                 rng.random() * 100, rng.random() < 0.5, now // 1000,
                 set(rng.sample(WORDS, 2)), {rng.choice(WORDS): rng.randrange(9)},
                 [rng.randrange(100)], *extra_value),
            )]  # fmt: skip
        if kind == "insert_ts":
            return "single", [(
                f"INSERT INTO {ks}.users (id, name, age) VALUES (?, ?, ?) USING TIMESTAMP ?",
                (uid, f"late {uid}", rng.randrange(18, 90), now - rng.randrange(3_000_000)),
            )]  # fmt: skip
        if kind == "update":
            extra = ", loyalty = ?" if self.users_loyalty else ""
            values = (rng.randrange(5),) if self.users_loyalty else ()
            return "single", [(
                f"UPDATE {ks}.users SET name = ?, age = ?{extra} WHERE id = ?",
                (f"renamed {uid}", rng.randrange(18, 90), *values, uid),
            )]  # fmt: skip
        if kind == "update_ttl":
            return "single", [(
                f"UPDATE {ks}.users USING TTL {TTL} SET score = ?, active = ? WHERE id = ?",
                (rng.random(), rng.random() < 0.5, uid),
            )]  # fmt: skip
        if kind == "update_ts":
            return "single", [(
                f"UPDATE {ks}.users USING TIMESTAMP ? SET score = ? WHERE id = ?",
                (now - rng.randrange(3_000_000), -rng.random(), uid),
            )]  # fmt: skip
        if kind == "delete":
            self._dirty.add(("u", uid))
            return "single", [(f"DELETE FROM {ks}.users WHERE id = ?", (uid,))]
        if kind == "delete_cols":
            columns = rng.choice(["phone, score", "tags", "email, visits", "age"])
            return "single", [(f"DELETE {columns} FROM {ks}.users WHERE id = ?", (uid,))]
        if kind == "set_add":
            return "single", [(
                f"UPDATE {ks}.users SET tags = tags + ? WHERE id = ?", ({rng.choice(WORDS)}, uid)
            )]  # fmt: skip
        if kind == "set_remove":
            return "single", [(
                f"UPDATE {ks}.users SET tags = tags - ? WHERE id = ?", ({rng.choice(WORDS)}, uid)
            )]  # fmt: skip
        if kind == "map_put":
            return "single", [(
                f"UPDATE {ks}.users SET prefs[?] = ? WHERE id = ?",
                (rng.choice(WORDS), rng.randrange(100), uid),
            )]  # fmt: skip
        if kind == "map_remove":
            return "single", [
                (f"DELETE prefs[?] FROM {ks}.users WHERE id = ?", (rng.choice(WORDS), uid))
            ]
        if kind == "list_append":
            return "single", [(
                f"UPDATE {ks}.users SET visits = visits + ? WHERE id = ?",
                ([rng.randrange(100)], uid),
            )]  # fmt: skip
        if kind == "list_prepend":
            return "single", [(
                f"UPDATE {ks}.users SET visits = ? + visits WHERE id = ?",
                ([-rng.randrange(100)], uid),
            )]  # fmt: skip
        return "unlogged", [
            (f"UPDATE {ks}.users SET name = ? WHERE id = ?", (f"batched {uid}", uid)),
            (f"UPDATE {ks}.users SET tags = tags + ? WHERE id = ?", ({rng.choice(WORDS)}, uid)),
        ]

    def _loyalty(self) -> tuple[str, tuple[Any, ...]]:
        if not self.users_loyalty:
            return "", ()
        return ", loyalty", (self.rng.randrange(5),)

    def _order(self, customer: int) -> Op:
        rng, ks = self.rng, self.ks
        kind = rng.choices(
            ["insert", "insert_static", "static_only", "update", "update_ttl", "insert_ts",
             "delete_row", "delete_range", "delete_partition", "delete_col", "delete_static",
             "batch"],
            [30, 8, 5, 15, 4, 3, 6, 5, 2, 4, 2, 4],
        )[0]  # fmt: skip
        if not self.orders_note and kind in ("update_ttl", "delete_col"):
            kind = "update"
        order_id = rng.randrange(16)
        note = ", note" if self.orders_note else ""
        note_marker = ", ?" if self.orders_note else ""
        note_value: tuple[Any, ...] = (f"note {rng.randrange(100)}",) if self.orders_note else ()
        insert = (
            f"INSERT INTO {ks}.orders (customer, order_id, status, amount{note}) "
            f"VALUES (?, ?, ?, ?{note_marker})"
        )
        row = (customer, order_id, rng.choice(["new", "paid", "sent"]), rng.random() * 500)
        if kind == "insert":
            return "single", [(insert, (*row, *note_value))]
        if kind == "insert_static":
            return "single", [(
                f"INSERT INTO {ks}.orders (customer, order_id, status, amount, customer_email, "
                "tier) VALUES (?, ?, ?, ?, ?, ?)",
                (*row, f"c{customer}@example.com", rng.choice(["gold", "silver"])),
            )]  # fmt: skip
        if kind == "static_only":
            return "single", [(
                f"UPDATE {ks}.orders SET tier = ? WHERE customer = ?",
                (rng.choice(["gold", "silver", "bronze"]), customer),
            )]  # fmt: skip
        if kind == "update":
            return "single", [(
                f"UPDATE {ks}.orders SET status = ?, amount = ? WHERE customer = ? "
                "AND order_id = ?",
                ("updated", rng.random() * 500, customer, order_id),
            )]  # fmt: skip
        if kind == "update_ttl":
            return "single", [(
                f"UPDATE {ks}.orders USING TTL {TTL} SET note = ? WHERE customer = ? "
                "AND order_id = ?",
                ("expires tomorrow", customer, order_id),
            )]  # fmt: skip
        if kind == "insert_ts":
            return "single", [(
                f"INSERT INTO {ks}.orders (customer, order_id, status) VALUES (?, ?, ?) "
                "USING TIMESTAMP ?",
                (customer, order_id, "late", _micros() - rng.randrange(3_000_000)),
            )]  # fmt: skip
        if kind == "delete_row":
            return "single", [(
                f"DELETE FROM {ks}.orders WHERE customer = ? AND order_id = ?", (customer, order_id)
            )]  # fmt: skip
        if kind == "delete_range":
            low = rng.randrange(12)
            return "single", [(
                f"DELETE FROM {ks}.orders WHERE customer = ? AND order_id >= ? AND order_id < ?",
                (customer, low, low + rng.randrange(1, 5)),
            )]  # fmt: skip
        if kind == "delete_partition":
            return "single", [(f"DELETE FROM {ks}.orders WHERE customer = ?", (customer,))]
        if kind == "delete_col":
            return "single", [(
                f"DELETE note FROM {ks}.orders WHERE customer = ? AND order_id = ?",
                (customer, order_id),
            )]  # fmt: skip
        if kind == "delete_static":
            return "single", [(f"DELETE tier FROM {ks}.orders WHERE customer = ?", (customer,))]
        statements: list[Statement] = [
            (insert, (customer, (order_id + i) % 16, "batched", float(i), *note_value))
            for i in range(3)
        ]
        statements.append(
            (f"UPDATE {ks}.orders SET tier = ? WHERE customer = ?", ("batched", customer))
        )
        return "unlogged", statements

    def _item(self, order: int) -> Op:
        rng, ks = self.rng, self.ks
        line = rng.randrange(10)
        kind = rng.choices(
            ["insert", "update", "map_put", "map_remove", "delete_row", "delete_range",
             "delete_partition", "delete_col"],
            [30, 15, 10, 4, 5, 4, 2, 3],
        )[0]  # fmt: skip
        if kind in ("map_put", "map_remove") and not self._clean("i", order, line):
            kind = "insert"
        if kind == "insert":
            self._dirty.discard(("i", order, line))
            return "single", [(
                f"INSERT INTO {ks}.items (order_id, line, sku, qty, attrs) VALUES (?, ?, ?, ?, ?)",
                (order, line, f"SKU-{rng.randrange(10**4)}", rng.randrange(1, 9),
                 {"colour": rng.choice(WORDS)}),
            )]  # fmt: skip
        if kind == "update":
            return "single", [(
                f"UPDATE {ks}.items SET qty = ? WHERE order_id = ? AND line = ?",
                (rng.randrange(1, 9), order, line),
            )]  # fmt: skip
        if kind == "map_put":
            return "single", [(
                f"UPDATE {ks}.items SET attrs[?] = ? WHERE order_id = ? AND line = ?",
                (rng.choice(["size", "gift", "colour"]), rng.choice(WORDS), order, line),
            )]  # fmt: skip
        if kind == "map_remove":
            return "single", [(
                f"DELETE attrs[?] FROM {ks}.items WHERE order_id = ? AND line = ?",
                (rng.choice(["size", "gift", "colour"]), order, line),
            )]  # fmt: skip
        if kind == "delete_col":
            return "single", [(
                f"DELETE attrs FROM {ks}.items WHERE order_id = ? AND line = ?", (order, line)
            )]  # fmt: skip
        if kind == "delete_row":
            self._dirty.add(("i", order, line))
            return "single", [(
                f"DELETE FROM {ks}.items WHERE order_id = ? AND line = ?", (order, line)
            )]  # fmt: skip
        self._dirty.update(("i", order, n) for n in range(10))
        if kind == "delete_range":
            return "single", [(
                f"DELETE FROM {ks}.items WHERE order_id = ? AND line > ? AND line <= ?",
                (order, line, line + 3),
            )]  # fmt: skip
        return "single", [(f"DELETE FROM {ks}.items WHERE order_id = ?", (order,))]

    def _reading(self, device: int, day: int) -> Op:
        rng, ks = self.rng, self.ks
        key = (f"d{device}", day)
        step = rng.randrange(20)
        ts = READING_EPOCH_MS + day * 86_400_000 + step * 1000
        seq = rng.randrange(2)
        kind = rng.choices(
            ["insert", "insert_ttl", "update", "list_append", "delete_range", "delete_row",
             "delete_partition"],
            [35, 5, 10, 8, 5, 4, 1],
        )[0]  # fmt: skip
        if kind == "list_append" and not self._clean("r", *key, step, seq):
            kind = "insert"
        if kind in ("insert", "insert_ttl"):
            self._dirty.discard(("r", *key, step, seq))
            using = f" USING TTL {TTL}" if kind == "insert_ttl" else ""
            return "single", [(
                f"INSERT INTO {ks}.readings (device, day, ts, seq, value, unit, labels) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?){using}",
                (*key, ts, seq, rng.random() * 40, "C", [rng.choice(WORDS)]),
            )]  # fmt: skip
        if kind == "update":
            return "single", [(
                f"UPDATE {ks}.readings SET value = ? WHERE device = ? AND day = ? AND ts = ? "
                "AND seq = ?",
                (rng.random() * 40, *key, ts, seq),
            )]  # fmt: skip
        if kind == "list_append":
            return "single", [(
                f"UPDATE {ks}.readings SET labels = labels + ? WHERE device = ? AND day = ? "
                "AND ts = ? AND seq = ?",
                ([rng.choice(WORDS)], *key, ts, seq),
            )]  # fmt: skip
        if kind == "delete_row":
            self._dirty.add(("r", *key, step, seq))
            return "single", [(
                f"DELETE FROM {ks}.readings WHERE device = ? AND day = ? AND ts = ? AND seq = ?",
                (*key, ts, seq),
            )]  # fmt: skip
        self._dirty.update(("r", *key, s, q) for s in range(20) for q in range(2))
        if kind == "delete_range":
            return "single", [(
                f"DELETE FROM {ks}.readings WHERE device = ? AND day = ? AND ts >= ? AND ts < ?",
                (*key, ts, ts + rng.randrange(1, 5) * 1000),
            )]  # fmt: skip
        return "single", [(f"DELETE FROM {ks}.readings WHERE device = ? AND day = ?", key)]

    def _lwt(self, uid: int) -> Op:
        rng, ks = self.rng, self.ks
        kind = rng.choice(["insert", "update", "delete"])
        if kind == "insert":
            return "single", [(
                f"INSERT INTO {ks}.users (id, name, email) VALUES (?, ?, ?) IF NOT EXISTS",
                (uid, f"lwt {uid}", f"l{uid}@example.com"),
            )]  # fmt: skip
        if kind == "update":
            return "single", [(
                f"UPDATE {ks}.users SET age = ? WHERE id = ? IF EXISTS", (rng.randrange(90), uid)
            )]  # fmt: skip
        return "single", [(f"DELETE FROM {ks}.users WHERE id = ? IF EXISTS", (uid,))]

    def _review(self, product: int) -> Op:
        rng, ks = self.rng, self.ks
        reviewer = rng.randrange(20)
        if rng.random() < 0.15:
            return "single", [(
                f"DELETE FROM {ks}.reviews WHERE product = ? AND reviewer = ?", (product, reviewer)
            )]  # fmt: skip
        return "single", [(
            f"INSERT INTO {ks}.reviews (product, reviewer, stars, body, email) "
            "VALUES (?, ?, ?, ?, ?)",
            (product, reviewer, rng.randrange(1, 6), f"review {uuid.uuid4().hex[:8]}",
             f"r{reviewer}@example.com"),
        )]  # fmt: skip


class Writer:
    """Executes waves through one driver session: prepared statements, concurrently."""

    def __init__(self, session: Any, concurrency: int = 96) -> None:
        self.session = session
        self.concurrency = concurrency
        self.statements = 0
        self._prepared: dict[str, Any] = {}

    def _statement(self, kind: str, statements: list[Statement]) -> tuple[Any, tuple[Any, ...]]:
        if kind == "single":
            ((cql, values),) = statements
            return self._prepare(cql), values
        batch = BatchStatement(BatchType.LOGGED if kind == "logged" else BatchType.UNLOGGED)
        for cql, values in statements:
            batch.add(self._prepare(cql), values)
        return batch, ()

    def _prepare(self, cql: str) -> Any:
        prepared = self._prepared.get(cql)
        if prepared is None:
            prepared = self._prepared[cql] = self.session.prepare(cql)
        return prepared

    def run(self, ops: list[Op]) -> int:
        """Execute one wave; returns the number of statements (batch members counted)."""
        work = [self._statement(kind, statements) for kind, statements in ops]
        execute_concurrent(self.session, work, concurrency=self.concurrency)
        count = sum(len(statements) for _, statements in ops)
        self.statements += count
        return count

    def until(
        self,
        workload: Workload,
        statements: int,
        between: Callable[[int], None] | None = None,
    ) -> int:
        """Waves until at least ``statements`` ran in total; ``between(done)`` is called
        after each wave (a test's hook for DDL or kills)."""
        while self.statements < statements:
            self.run(workload.wave())
            if between is not None:
                between(self.statements)
        return self.statements


def evolving(session: Any, workload: Workload, at: tuple[int, int, int]) -> Callable[[int], None]:
    """A :meth:`Writer.until` hook changing the schema mid-run: ``ALTER TABLE users ADD
    loyalty`` once ``at[0]`` statements ran, ``ALTER TABLE orders DROP note`` at
    ``at[1]``, a new CDC table (reviews) at ``at[2]``; the workload follows each."""
    ks = workload.ks

    def evolve(done: int) -> None:
        if done >= at[0] and not workload.users_loyalty:
            session.execute(f"ALTER TABLE {ks}.users ADD loyalty int")
            workload.users_loyalty = True
        if done >= at[1] and workload.orders_note:
            session.execute(f"ALTER TABLE {ks}.orders DROP note")
            workload.orders_note = False
        if done >= at[2] and not workload.reviews:
            session.execute(REVIEWS.format(ks=ks))
            workload.reviews = True

    return evolve


def create_tables(session: Any, ks: str) -> None:
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    for ddl in TABLES.values():
        session.execute(ddl.format(ks=ks))


def _micros() -> int:
    return time.time_ns() // 1000
