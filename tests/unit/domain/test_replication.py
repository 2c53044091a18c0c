import attrs

from cdc_adapters.memory import MemoryChangeSource, MemorySink
from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import EventsRejectedError, SchemaIncompatibleError, SinkError, TableError
from cdc_domain.events import Operation, SourcePosition
from cdc_domain.masking import REDACTED, MaskingPolicy
from cdc_domain.replication import Destination, ReplicateBatch
from cdc_domain.schema_changes import ChangeKind
from tests.factories import column, event, replica_copy
from tests.unit.domain.conftest import ORDERS


class RejectingSink(MemorySink):
    """A real in-memory sink that refuses some events, as a database refuses bad values."""

    def __init__(self, name, reject=(), incompatible_table=None):
        super().__init__(name, DestinationKind.POSTGRES)
        self.reject = set(reject)
        self.incompatible_table = incompatible_table

    async def write(self, batch):
        if self.incompatible_table and any(
            e.qualified_table == self.incompatible_table for e in batch.events
        ):
            raise SchemaIncompatibleError("cannot hold", table=self.incompatible_table)
        bad = [e.event_id for e in batch.events if e.columns.get("status") in self.reject]
        if bad:
            raise EventsRejectedError("value out of range", bad)
        await super().write(batch)


def replicate(world, *sinks, masking=None):
    return ReplicateBatch(
        source=world["source"],
        schemas=world["schemas"],
        destinations=[Destination(sink, world["offsets"]) for sink in sinks],
        dead_letters=world["dlq"],
        clock=world["clock"],
        masking=masking or MaskingPolicy(),
        history=world["history"],
    )


def orders(count, start=1):
    return [event(key=i, ts=i, columns={"status": f"s{i}"}) for i in range(start, start + count)]


async def test_a_batch_reaches_the_sink_and_moves_its_offset(world):
    sink = MemorySink("a")
    batch = orders(3)
    world["source"].append(*batch)
    (outcome,) = await replicate(world, sink)(max_events=10)
    assert outcome.ok
    assert outcome.delivered == 3
    assert len(sink.state.rows("shop.orders")) == 3
    record = await world["offsets"].load("a", "node1")
    assert record.position == batch[-1].position
    assert record.events_processed == 3
    assert world["source"].acknowledged == batch[-1].position


async def test_batches_are_bounded_and_resume_from_the_offset(world):
    sink = MemorySink("a")
    world["source"].append(*orders(5))
    use_case = replicate(world, sink)
    first = await use_case(max_events=2)
    second = await use_case(max_events=2)
    third = await use_case(max_events=2)
    assert [o[0].delivered for o in (first, second, third)] == [2, 2, 1]
    assert len(sink.state.rows("shop.orders")) == 5
    assert (await world["offsets"].load("a", "node1")).events_processed == 5


async def test_a_sink_failure_keeps_its_offset(world):
    sink = MemorySink("a")
    world["source"].append(*orders(2))
    use_case = replicate(world, sink)
    await use_case(max_events=1)
    before = await world["offsets"].load("a", "node1")
    sink.fail_next = 1
    (outcome,) = await use_case(max_events=10)
    assert not outcome.ok
    assert await world["offsets"].load("a", "node1") == before
    (outcome,) = await use_case(max_events=10)
    assert outcome.ok
    assert len(sink.state.rows("shop.orders")) == 2


async def test_one_failing_sink_does_not_stop_another(world):
    healthy, failing = MemorySink("healthy"), MemorySink("failing")
    failing.fail_next = 3
    world["source"].append(*orders(4))
    use_case = replicate(world, healthy, failing)
    for _ in range(3):
        outcomes = {o.destination: o for o in await use_case(max_events=2)}
        assert not outcomes["failing"].ok
    assert len(healthy.state.rows("shop.orders")) == 4
    assert await world["offsets"].load("failing", "node1") is None
    # The source is only told to free what every destination has.
    assert world["source"].acknowledged is None
    await use_case(max_events=10)
    assert len(failing.state.rows("shop.orders")) == 4
    assert world["source"].acknowledged is not None


async def test_invalid_events_go_to_the_dlq_with_their_details(world):
    sink = MemorySink("pg", DestinationKind.POSTGRES)
    good = event(key=1, columns={"status": "ok"})
    counter = event(key=2, counters={"hits": 1})
    world["source"].append(good, counter)
    (outcome,) = await replicate(world, sink)(max_events=10)
    assert (outcome.delivered, outcome.dead_lettered) == (1, 1)
    (dead,) = await world["dlq"].list()
    assert dead.reason is FailureReason.SCHEMA_INCOMPATIBLE
    assert dead.destination == "pg"
    assert dead.event.event_id == counter.event_id
    assert dead.schema_details["columns"][0]["column"] == "hits"
    assert dead.schema_details["table"] == "shop.orders"
    assert dead.failed_at == world["clock"].now()
    assert (await world["offsets"].load("pg", "node1")).position == counter.position


async def test_events_of_an_unknown_table_are_dead_lettered(world):
    sink = MemorySink("a")
    world["source"].append(event(table="ghost", columns={"x": 1}))
    await replicate(world, sink)(max_events=10)
    (dead,) = await world["dlq"].list()
    assert dead.reason is FailureReason.UNKNOWN_TABLE


async def test_undecodable_source_entries_reach_the_dlq_and_do_not_block(world):
    sink = MemorySink("a")
    world["source"].append(event(key=1, columns={"status": "a"}, position=SourcePosition(7, 10)))
    world["source"].fail(
        DeadLetterEvent.for_raw(
            b"\x00garbage",
            reason=FailureReason.DECODE_ERROR,
            error="CRC mismatch",
            failed_at=world["clock"].now(),
            position=SourcePosition(7, 20),
        )
    )
    world["source"].append(event(key=2, columns={"status": "b"}, position=SourcePosition(7, 30)))
    await replicate(world, sink)(max_events=10)
    (dead,) = await world["dlq"].list()
    assert dead.reason is FailureReason.DECODE_ERROR
    assert dead.raw == b"\x00garbage"
    assert len(sink.state.rows("shop.orders")) == 2


async def test_rejected_events_are_split_off_and_the_rest_written(world):
    sink = RejectingSink("pg", reject={"bad"})
    world["source"].append(
        event(key=1, columns={"status": "ok"}),
        event(key=2, columns={"status": "bad"}),
        event(key=3, columns={"status": "ok"}),
    )
    (outcome,) = await replicate(world, sink)(max_events=10)
    assert (outcome.delivered, outcome.dead_lettered) == (2, 1)
    (dead,) = await world["dlq"].list(reason=FailureReason.PROCESSING_ERROR)
    assert dead.event.partition_key == {"id": 2}
    assert "out of range" in dead.error


async def test_a_table_the_sink_cannot_hold_is_dead_lettered_and_others_flow(world):
    sink = RejectingSink("pg", incompatible_table="shop.items")
    world["source"].append(
        event(key=1, columns={"status": "ok"}),
        event(key=2, table="items", columns={"status": "x"}),
    )
    (outcome,) = await replicate(world, sink)(max_events=10)
    assert (outcome.delivered, outcome.dead_lettered) == (1, 1)
    (dead,) = await world["dlq"].list()
    assert dead.reason is FailureReason.SCHEMA_INCOMPATIBLE
    assert dead.event.table == "items"


async def test_masking_happens_before_any_sink_sees_the_event(world):
    sink = MemorySink("a")
    world["source"].append(event(columns={"email": "a@b.c", "status": "new"}))
    await replicate(world, sink)(max_events=10)
    assert sink.state.rows("shop.orders") == {((1,), ()): {"email": REDACTED, "status": "new"}}


async def test_nothing_new_changes_nothing(world):
    sink = MemorySink("a")
    (outcome,) = await replicate(world, sink)(max_events=10)
    assert outcome.ok
    assert outcome.delivered == 0
    assert await world["offsets"].load("a", "node1") is None


async def test_redelivering_the_same_batch_is_harmless(world):
    sink = MemorySink("a")
    world["source"].append(*orders(3))
    use_case = replicate(world, sink)
    await use_case(max_events=10)
    rows = sink.state.rows("shop.orders")
    # A crash after the write but before the offset commit re-delivers the batch.
    world["offsets"]._records.clear()
    await use_case(max_events=10)
    assert sink.state.rows("shop.orders") == rows


async def test_the_first_batch_of_a_table_creates_it_in_the_destination(world):
    sink = MemorySink("a")
    world["source"].append(*orders(2))
    (outcome,) = await replicate(world, sink)(max_events=10)
    assert outcome.schema_changes == 1
    assert [c.kind for c in sink.applied_changes] == [ChangeKind.CREATE_TABLE]
    (recorded,) = await world["history"].changes("a")
    assert recorded.applied_at == world["clock"].now()
    await replicate(world, sink)(max_events=10)
    assert len(sink.applied_changes) == 1


async def test_a_new_column_is_applied_before_the_events_that_carry_it(world):
    sink = MemorySink("a")
    world["source"].append(*orders(1))
    use_case = replicate(world, sink)
    await use_case(max_events=10)
    wider = attrs.evolve(ORDERS, columns=(*ORDERS.columns, column("note", "text")))
    world["schemas"].put(wider)
    world["source"].append(event(key=9, ts=9, columns={"note": "hi"}))
    (outcome,) = await use_case(max_events=10)
    assert outcome.delivered == 1
    assert [(c.kind, c.column) for c in sink.applied_changes][-1] == (
        ChangeKind.ADD_COLUMN,
        "note",
    )
    assert sink.batches[-1].schemas["shop.orders"] == wider


async def test_an_incompatible_change_blocks_only_that_table_for_that_destination(world):
    pg, log = MemorySink("pg", DestinationKind.POSTGRES), MemorySink("log")
    world["source"].append(event(key=1, columns={"status": "a"}))
    use_case = replicate(world, pg, log)
    await use_case(max_events=10)
    retyped = attrs.evolve(
        ORDERS,
        columns=tuple(
            attrs.evolve(c, type=column("x", "int").type) if c.name == "status" else c
            for c in ORDERS.columns
        ),
    )
    world["schemas"].put(retyped)
    world["source"].append(
        event(key=2, columns={"status": 5}), event(key=3, table="items", columns={"status": "x"})
    )
    outcomes = {o.destination: o for o in await use_case(max_events=10)}
    assert outcomes["pg"].delivered == 1
    assert outcomes["pg"].dead_lettered == 1
    assert outcomes["log"].delivered == 2
    (blocked,) = outcomes["pg"].blocked
    assert blocked.table == "shop.orders"
    assert "schema accept" in blocked.advice
    dead = await world["dlq"].list(destination="pg", reason=FailureReason.SCHEMA_INCOMPATIBLE)
    assert dead[0].schema_details["column"] == "status"
    assert dead[0].schema_details["new_type"] == "int"
    assert "shop.items" in pg.tables
    assert [(b.destination, b.table) for b in use_case.blocked] == [("pg", "shop.orders")]


async def test_dead_letters_never_hold_unmasked_values(world):
    pg = MemorySink("pg", DestinationKind.POSTGRES)
    world["source"].append(
        event(key=1, table="ghost", columns={"email": "a@b.c"}),
        event(key=2, columns={"email": "a@b.c"}, counters={"hits": 1}),
    )
    await replicate(world, pg)(max_events=10)
    letters = await world["dlq"].list()
    assert {d.reason for d in letters} == {
        FailureReason.UNKNOWN_TABLE,
        FailureReason.SCHEMA_INCOMPATIBLE,
    }
    assert all(d.event.columns["email"] == REDACTED for d in letters)


async def test_an_event_the_policy_cannot_mask_is_dead_lettered_redacted(world):
    sink = MemorySink("a")
    keyed = event(columns={"email": "a@b.c", "status": "x"}).create(
        operation=Operation.UPDATE,
        keyspace="shop",
        table="orders",
        partition_key={"id": 7},
        columns={"email": "a@b.c", "status": "x"},
        timestamp_micros=1,
        captured_at=world["clock"].now(),
        position=SourcePosition(3, 1),
    )
    world["source"].append(keyed)
    policy = MaskingPolicy.from_config(
        {"rules": [{"field": "id", "class": "pii"}], "mask_key_columns": ["shop.orders.id"]},
        hmac_key=None,
    )
    (outcome,) = await replicate(world, sink, masking=policy)(max_events=10)
    assert outcome.dead_lettered == 1
    (dead,) = await world["dlq"].list()
    assert dead.reason is FailureReason.MASKING_ERROR
    assert dead.event.columns == {"email": REDACTED, "status": "x"}
    assert dead.event.partition_key == {"id": None}


class BrokenTableSink(MemorySink):
    """A real in-memory sink whose database refuses one table's DDL or its writes."""

    def __init__(self, name, *, refuse_ddl=None, refuse_writes=None):
        super().__init__(name, DestinationKind.POSTGRES)
        self.refuse_ddl, self.refuse_writes = refuse_ddl, refuse_writes
        self.ddl_attempts = 0

    async def apply_schema_change(self, change):
        if change.qualified_table == self.refuse_ddl:
            self.ddl_attempts += 1
            raise SinkError(f"column with this name already exists ({change.qualified_table})")
        await super().apply_schema_change(change)

    async def write(self, batch):
        if self.refuse_writes and any(
            e.qualified_table == self.refuse_writes for e in batch.events
        ):
            raise TableError("Code: 53. Type mismatch", table=self.refuse_writes)
        await super().write(batch)


async def test_a_table_whose_ddl_is_refused_pauses_alone_and_the_others_flow(world):
    sink = BrokenTableSink("ch", refuse_ddl="shop.items")
    use_case = replicate(world, sink)
    world["source"].append(event(key=1, columns={"status": "a"}), event(key=2, table="items"))
    (first,) = await use_case(max_events=10)
    world["source"].append(event(key=3, columns={"status": "b"}), event(key=4, table="items"))
    (second,) = await use_case(max_events=10)

    assert (first.delivered, first.dead_lettered) == (1, 1)
    assert (second.delivered, second.dead_lettered) == (1, 1)
    assert sink.ddl_attempts == 1  # paused: not tried again every batch
    assert [b.table for b in second.blocked] == ["shop.items"]
    assert "already exists" in second.blocked[0].advice
    assert "paused" in second.blocked[0].advice
    assert len(sink.state.rows("shop.orders")) == 2
    letters = await world["dlq"].list(reason=FailureReason.SCHEMA_INCOMPATIBLE)
    assert sorted(e.event.partition_key["id"] for e in letters) == [2, 4]
    assert (await world["offsets"].load("ch", "node1")).events_processed == 4


async def test_a_paused_table_is_tried_again_once_its_pause_is_over(world):
    sink = BrokenTableSink("ch", refuse_ddl="shop.items")
    use_case = ReplicateBatch(
        source=world["source"],
        schemas=world["schemas"],
        destinations=[Destination(sink, world["offsets"])],
        dead_letters=world["dlq"],
        clock=world["clock"],
        masking=MaskingPolicy(),
        history=world["history"],
        paused_table_retry_s=60,
    )
    world["source"].append(event(key=1, table="items"))
    await use_case(max_events=10)
    sink.refuse_ddl = None  # the operator fixed the destination
    world["clock"].advance(61)
    world["source"].append(event(key=2, table="items"))
    (outcome,) = await use_case(max_events=10)
    assert (outcome.delivered, outcome.blocked) == (1, ())


async def test_a_table_whose_writes_are_refused_pauses_alone_and_the_others_flow(world):
    sink = BrokenTableSink("ch", refuse_writes="shop.items")
    use_case = replicate(world, sink)
    world["source"].append(event(key=1, columns={"status": "a"}), event(key=2, table="items"))
    (first,) = await use_case(max_events=10)
    sink.refuse_writes = None  # paused anyway: no write to the table until the pause ends
    world["source"].append(event(key=3, table="items"), event(key=4, columns={"status": "b"}))
    (second,) = await use_case(max_events=10)

    assert (first.delivered, first.dead_lettered) == (1, 1)
    assert (second.delivered, second.dead_lettered) == (1, 1)
    assert [b.table for b in second.blocked] == ["shop.items"]
    assert "Type mismatch" in second.blocked[0].advice
    letters = await world["dlq"].list(reason=FailureReason.PROCESSING_ERROR)
    assert sorted(e.event.partition_key["id"] for e in letters) == [2, 3]
    assert sink.state.rows("shop.items") == {}


async def test_the_copies_of_a_bad_write_that_several_nodes_read_are_one_dead_letter(world):
    """With replication factor 3 each node's agent reads its own copy of every write:
    own event id, own position. A bad write is still one dead letter per reason."""
    sink = RejectingSink("pg", reject={"bad"})
    writes = [
        event(key=1, ts=1, table="ghost", columns={"x": 1}),
        event(key=2, ts=2, counters={"hits": 1}),
        event(key=3, ts=3, columns={"status": "bad"}),
        event(key=4, ts=4, columns={"status": "ok"}),
    ]
    for n, node in enumerate(("node1", "node2", "node3")):
        source = MemoryChangeSource(node)
        source.append(
            *(replica_copy(w, node, SourcePosition(n, 10 * i)) for i, w in enumerate(writes, 1))
        )
        agent = ReplicateBatch(
            source=source,
            schemas=world["schemas"],
            destinations=[Destination(sink, world["offsets"])],
            dead_letters=world["dlq"],
            clock=world["clock"],
            masking=MaskingPolicy(),
            history=world["history"],
        )
        (outcome,) = await agent(max_events=10)
        assert (outcome.delivered, outcome.dead_lettered) == (1, 3)
    letters = await world["dlq"].list()
    assert sorted((d.event.partition_key["id"], d.reason.value) for d in letters) == [
        (1, "UNKNOWN_TABLE"),
        (2, "SCHEMA_INCOMPATIBLE"),
        (3, "PROCESSING_ERROR"),
    ]
