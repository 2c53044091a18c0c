"""The Sink contract: every destination adapter passes these, unchanged.

An adapter's test module subclasses :class:`SinkContract` and provides two fixtures:
``sink`` (a fresh, empty sink) and ``read_back`` (an async function returning what the
destination holds, in the adapter's ``semantics``): for ``"mirror"`` sinks, the rows
``{(partition key values, clustering values): {column: value}}`` as a reader of the
destination sees them; for ``"log"`` sinks, the list of event ids in delivery order.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import SchemaIncompatibleError
from cdc_domain.events import DeletionScope, Operation, SourcePosition
from cdc_domain.health import HealthStatus
from cdc_domain.mirror import MirrorState
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import Sink, SinkBatch
from cdc_domain.schema_changes import SchemaDiff
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


def expected_rows(events):
    state = MirrorState()
    state.apply_all(events)
    return state.rows(QUALIFIED)


class SinkContract:
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
        assert await read_back() == await self.expected((*HISTORY[:1], note))

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
