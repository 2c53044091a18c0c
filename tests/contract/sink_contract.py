"""The Sink contract: every destination adapter passes these, unchanged.

An adapter's test module subclasses :class:`SinkContract` and provides two fixtures:
``sink`` (a fresh, empty sink) and ``read_back`` (an async function returning what the
destination holds, in the adapter's ``semantics``): for ``"mirror"`` sinks, the rows
``{(partition key values, clustering values): {column: value}}`` as a reader of the
destination sees them; for ``"log"`` sinks, the list of event ids in delivery order.
"""

from __future__ import annotations

import itertools
import uuid

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_adapters.memory import ManualClock
from cdc_domain.destinations import DestinationKind, DroppedColumns
from cdc_domain.errors import SchemaIncompatibleError
from cdc_domain.events import (
    CollectionDelta,
    CollectionElement,
    DeletionScope,
    Operation,
    SourcePosition,
)
from cdc_domain.health import HealthStatus
from cdc_domain.mirror import MirrorState
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import OffsetCommittingSink, Sink, SinkBatch
from cdc_domain.schema_changes import SchemaDiff
from cdc_domain.values import UdtValue
from tests.factories import column, event, table

SCHEMA = table("orders", keyspace="contract", regular={"status": "text", "total": "int"})
QUALIFIED = SCHEMA.qualified_name


def changes(*specs):
    """Events of the contract table, positioned in the order given."""
    return tuple(
        event(
            op,
            keyspace="contract",
            key=key,
            ts=ts,
            position=SourcePosition(1, 100 + i),
            **kwargs,
        )
        for i, (op, key, ts, kwargs) in enumerate(specs)
    )


def batch(events, end=None):
    position = end or (events[-1].position if events else SourcePosition(1, 0))
    return SinkBatch(tuple(events), {QUALIFIED: SCHEMA}, Checkpoint("node1", position, len(events)))


HISTORY = changes(
    (Operation.INSERT, 1, 10, {"columns": {"status": "new", "total": 5}}),
    (Operation.UPDATE, 1, 20, {"columns": {"status": "paid"}}),
    (Operation.INSERT, 2, 15, {"columns": {"status": "new", "total": 7}}),
    (Operation.DELETE, 2, 30, {"scope": DeletionScope.ROW}),
    (Operation.UPDATE, 3, 25, {"columns": {"total": 9}}),
    (Operation.UPDATE, 2, 12, {"columns": {"status": "late"}}),
    (Operation.DELETE, 3, 26, {"scope": DeletionScope.CELL, "deleted_columns": ("total",)}),
    (Operation.UPDATE, 1, 18, {"columns": {"total": 6}}),
)


def expected_rows(events, schema=SCHEMA):
    state = MirrorState()
    state.apply_all(events, {schema.qualified_name: schema})
    return state.rows(schema.qualified_name)


def batch_of(events, schema):
    """A batch of another contract table's events."""
    end = events[-1].position
    return SinkBatch(tuple(events), {schema.qualified_name: schema}, Checkpoint("node1", end, 1))


EDGES = table(
    "edges",
    keyspace="contract",
    partition={"id": "text"},
    clustering={"ck": "text"},
    regular={
        "t": "text",
        "b": "blob",
        "fl": "frozen<list<text>>",
        "fm": "frozen<map<text, blob>>",
        "s": "set<text>",
        "m": "map<text, text>",
    },
    static={"st": "text", "sb": "blob"},
)
FAMILIES = table(
    "families",
    keyspace="contract",
    regular={
        "tuples": "list<frozen<tuple<int, text>>>",
        "by_name": "map<text, frozen<tuple<int, text>>>",
        "nested": "frozen<list<frozen<set<int>>>>",
        "nested_map": "frozen<map<int, frozen<list<text>>>>",
        "home": "address",
        "work": "frozen<address>",
    },
)
_positions = itertools.count(1)


def on(schema, op, key, ts, **kwargs):
    """An event of another contract table, positioned after every earlier one."""
    return event(
        op,
        keyspace=schema.keyspace,
        table=schema.table,
        key=key,
        ts=ts,
        position=SourcePosition(3, next(_positions)),
        **kwargs,
    )


def elements(ts, *keys, values=None):
    return tuple(
        CollectionElement(k, None if values is None else values[i], ts) for i, k in enumerate(keys)
    )


class SinkContract:
    """``read_back(schema=SCHEMA)`` reads the table of ``schema`` as a reader would."""

    semantics = "mirror"

    async def expected(self, events):
        if self.semantics == "mirror":
            return expected_rows(events)
        seen = dict.fromkeys(e.event_id for e in events)
        return list(seen)

    async def test_is_a_sink(self, sink):
        assert isinstance(sink, Sink)
        assert isinstance(sink.kind, DestinationKind)
        assert sink.name

    async def test_writes_a_batch(self, sink, read_back):
        await sink.write(batch(HISTORY))
        assert await read_back() == await self.expected(HISTORY)

    async def test_an_empty_batch_is_fine(self, sink, read_back):
        await sink.write(batch(()))
        assert await read_back() == await self.expected(())

    async def test_the_same_batch_twice_changes_nothing(self, sink, read_back):
        await sink.write(batch(HISTORY))
        first = await read_back()
        await sink.write(batch(HISTORY))
        assert await read_back() == first

    async def test_a_replay_of_the_tail_after_a_crash_changes_nothing(self, sink, read_back):
        await sink.write(batch(HISTORY[:5]))
        await sink.write(batch(HISTORY[3:]))
        assert await read_back() == await self.expected(HISTORY)

    async def test_batches_in_sequence_equal_one_batch(self, sink, read_back):
        for single in HISTORY:
            await sink.write(batch((single,)))
        assert await read_back() == await self.expected(HISTORY)

    async def test_many_changes_to_one_key_in_one_batch(self, sink, read_back):
        events = changes(
            *((Operation.UPDATE, 1, ts, {"columns": {"total": ts}}) for ts in (5, 9, 7, 3))
        )
        await sink.write(batch(events))
        assert await read_back() == await self.expected(events)

    async def test_creating_a_table_twice_is_harmless(self, sink, read_back):
        (create,) = SchemaDiff().keyspaces({}, {("contract", "orders"): SCHEMA})
        await sink.apply_schema_change(create)
        await sink.apply_schema_change(create)
        await sink.write(batch(HISTORY[:1]))
        assert await read_back() == await self.expected(HISTORY[:1])

    async def test_an_added_column_can_be_written_after_the_change(self, sink, read_back):
        await sink.write(batch(HISTORY[:1]))
        wider = attrs.evolve(SCHEMA, columns=(*SCHEMA.columns, column("note", "text")))
        (add,) = SchemaDiff().tables(SCHEMA, wider)
        await sink.apply_schema_change(add)
        await sink.apply_schema_change(add)
        note = event(
            Operation.UPDATE,
            keyspace="contract",
            key=1,
            ts=50,
            columns={"note": "hi"},
            position=SourcePosition(2, 1),
        )
        await sink.write(
            SinkBatch((note,), {QUALIFIED: wider}, Checkpoint("node1", note.position, 1))
        )
        assert await read_back(wider) == await self.expected((*HISTORY[:1], note))

    async def test_an_incompatible_change_raises_a_typed_error(self, sink):
        await sink.write(batch(HISTORY[:1]))
        rekeyed = attrs.evolve(
            SCHEMA,
            columns=tuple(
                attrs.evolve(c, type=column("x", "text").type) if c.name == "id" else c
                for c in SCHEMA.columns
            ),
        )
        (alter,) = SchemaDiff().tables(SCHEMA, rekeyed)
        with pytest.raises(SchemaIncompatibleError) as raised:
            await sink.apply_schema_change(alter)
        assert raised.value.table == QUALIFIED

    async def test_reports_itself_healthy(self, sink):
        report = await sink.health()
        assert report.status is HealthStatus.UP
        assert report.name == sink.name


class OffsetCommittingSinkContract:
    """Sinks that commit offsets (``commits_offsets``) move a batch's checkpoint with the
    batch, and read it back through their ``offset_store``. The ``sink`` fixture is such
    a sink, fresh."""

    async def test_commits_offsets_and_has_their_store(self, sink):
        assert sink.commits_offsets
        assert isinstance(sink, OffsetCommittingSink)

    async def test_a_batch_moves_its_checkpoint_with_it(self, sink):
        store = sink.offset_store(ManualClock())
        await sink.write(batch(HISTORY[:3]))
        await sink.write(batch(HISTORY[3:5], end=SourcePosition(1, 900)))
        record = await store.load(sink.name, "node1")
        assert (record.position, record.events_processed) == (SourcePosition(1, 900), 5)

    async def test_a_batch_without_a_checkpoint_moves_nothing(self, sink):
        store = sink.offset_store(ManualClock())
        await sink.write(SinkBatch(HISTORY[:2], {QUALIFIED: SCHEMA}, None))
        assert await store.load(sink.name, "node1") is None


class MirrorSinkContract(SinkContract):
    """Extra guarantees of current-state mirrors: order does not matter."""

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        order=st.permutations(range(len(HISTORY))), repeats=st.lists(st.integers(0, 7), max_size=4)
    )
    async def test_any_order_with_duplicates_converges(self, make_sink, order, repeats):
        sink, read_back = await make_sink()
        delivered = [HISTORY[i] for i in order] + [HISTORY[i] for i in repeats]
        for i in range(0, len(delivered), 3):
            await sink.write(batch(delivered[i : i + 3]))
        assert await read_back() == expected_rows(HISTORY)

    async def test_a_late_older_write_does_not_resurrect_a_delete(self, sink, read_back):
        events = changes(
            (Operation.DELETE, 5, 9, {"scope": DeletionScope.ROW}),
            (Operation.INSERT, 5, 4, {"columns": {"status": "zombie"}}),
        )
        await sink.write(batch(events[:1]))
        await sink.write(batch(events[1:]))
        assert await read_back() == {}

    @pytest.mark.parametrize("together", [True, False])
    @pytest.mark.parametrize("first", ["b", "a"])
    async def test_equal_timestamps_are_settled_by_value_whatever_the_order(
        self, make_sink, first, together
    ):
        """Cassandra keeps the greater serialized value: 'b' over 'a', and the int -1
        (0xffffffff) over 1; a deletion at the same timestamp beats both."""
        b = (Operation.UPDATE, 9, 50, {"columns": {"status": "b", "total": 1}})
        a = (Operation.UPDATE, 9, 50, {"columns": {"status": "a", "total": -1}})
        gone = (Operation.UPDATE, 10, 50, {"columns": {"status": "kept?"}})
        deleted = (
            Operation.DELETE,
            10,
            50,
            {"scope": DeletionScope.CELL, "deleted_columns": ("status",)},
        )
        specs = [b, a, gone, deleted] if first == "b" else [deleted, a, gone, b]
        events = changes(*specs)
        sink, read_back = await make_sink()
        for part in [events] if together else [(e,) for e in events]:
            await sink.write(batch(part))
        assert await read_back() == expected_rows(events)
        assert (await read_back())[((9,), ())] == {"status": "b", "total": -1}
        assert ((10,), ()) not in await read_back()

    async def test_empty_text_empty_blob_and_backslash_n_survive_in_every_position(self, make_sink):
        s_delta = CollectionDelta("set", elements=elements(11, "", "\\N"))
        m_delta = CollectionDelta("map", elements=elements(11, "", "\\N", values=["\\N", ""]))
        events = [
            on(EDGES, Operation.INSERT, "\\N", 10, clustering_key={"ck": ""},
               columns={"t": "", "b": b"", "fl": ["", "\\N"], "fm": {"": b"", "\\N": b"\\N"}}),
            on(EDGES, Operation.UPDATE, "\\N", 11, clustering_key={"ck": "\\N"},
               columns={"t": "\\N", "b": b"\\N"}, collections={"s": s_delta, "m": m_delta}),
            on(EDGES, Operation.UPDATE, "\\N", 12, static=True, columns={"st": "", "sb": b""}),
            on(EDGES, Operation.UPDATE, "x", 12, clustering_key={"ck": "\t\n"},
               columns={"t": "\\"}),
            on(EDGES, Operation.UPDATE, "x", 13, static=True, columns={"st": "\\N", "sb": b"\\N"}),
        ]  # fmt: skip
        sink, read_back = await make_sink()
        await sink.write(batch_of(events, EDGES))
        rows = await read_back(EDGES)
        assert rows == expected_rows(events, EDGES)
        assert rows[(("\\N",), ("",))]["st"] == ""
        assert rows[(("\\N",), ("",))]["t"] == ""

    async def test_every_type_family_lands_whole_and_element_by_element(self, make_sink):
        """Collections of tuples, nested frozen collections, and UDTs: a frozen one
        whole, a non-frozen one written, then one field updated and another deleted."""
        home = CollectionDelta(
            "udt", overwritten=True, elements=elements(10, "street", "zip", values=["Main", 1])
        )
        events = [
            on(FAMILIES, Operation.INSERT, 1, 10,
               columns={"nested": [frozenset({1, -2}), frozenset()], "nested_map": {3: ["", "x"]},
                        "work": UdtValue((("street", "Dock"), ("zip", None)))},
               collections={
                   "tuples": CollectionDelta("list", overwritten=True, elements=(
                       CollectionElement(uuid.UUID(int=(1 << 76) | 1), (1, "one"), 10),
                       CollectionElement(uuid.UUID(int=(2 << 76) | 1), (2, None), 10),
                   )),
                   "by_name": CollectionDelta("map", overwritten=True,
                                              elements=elements(10, "a", values=[(7, "seven")])),
                   "home": home,
               }),
            on(FAMILIES, Operation.UPDATE, 1, 20, collections={
                "home": CollectionDelta("udt", elements=elements(20, "street", values=["High"])),
                "by_name": CollectionDelta("map", elements=elements(20, "b", values=[(8, "")])),
            }),
            on(FAMILIES, Operation.UPDATE, 1, 30, collections={
                "home": CollectionDelta("udt", removed=("zip",)),
            }),
        ]  # fmt: skip
        sink, read_back = await make_sink()
        for single in events:
            await sink.write(batch_of([single], FAMILIES))
        assert _plain(await read_back(FAMILIES)) == _plain(expected_rows(events, FAMILIES))

    @pytest.mark.parametrize("policy", list(DroppedColumns))
    async def test_a_row_only_a_dropped_column_kept_alive_is_gone(self, make_sink, policy):
        with_gone = attrs.evolve(SCHEMA, columns=(*SCHEMA.columns, column("gone", "text")))
        dropped = attrs.evolve(
            SCHEMA, dropped_columns=tuple(c for c in with_gone.columns if c.name == "gone")
        )
        events = changes(
            (Operation.UPDATE, 7, 10, {"columns": {"gone": "only this"}}),
            (Operation.UPDATE, 8, 10, {"columns": {"gone": "x", "status": "s"}}),
            (Operation.INSERT, 9, 10, {"columns": {"gone": "marker"}}),
        )
        sink, read_back = await make_sink(drop_columns=policy)
        await sink.write(
            SinkBatch(events, {QUALIFIED: with_gone}, Checkpoint("node1", events[-1].position, 3))
        )
        (drop,) = SchemaDiff().tables(with_gone, dropped)
        await sink.apply_schema_change(drop)
        assert await read_back(dropped) == {((8,), ()): {"status": "s"}, ((9,), ()): {}}


def _plain(rows):
    """UDT values as dicts of their non-null fields: a frozen UDT holds every field, a
    non-frozen one only those with a live cell, and readers give either."""

    def plain(value):
        if isinstance(value, UdtValue):
            value = value.as_dict()
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {k: plain(v) for k, v in value.items() if v is not None}
        return value

    return {key: {name: plain(v) for name, v in values.items()} for key, values in rows.items()}
