"""The OffsetStore contract. Subclasses provide ``offset_store`` (fresh and empty) and
``reopen`` (an async function giving a new store over the same storage, or the same
store where there is no storage to reopen)."""

from __future__ import annotations

from cdc_domain.events import SourcePosition
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import OffsetStore
from cdc_domain.snapshot_progress import SnapshotProgress
from cdc_domain.tokens import TokenRange


class OffsetStoreContract:
    async def test_is_an_offset_store(self, offset_store):
        assert isinstance(offset_store, OffsetStore)

    async def test_nothing_committed_loads_none(self, offset_store):
        assert await offset_store.load("pg", "node1") is None
        assert await offset_store.list() == []

    async def test_commit_then_load(self, offset_store):
        await offset_store.commit("pg", Checkpoint("node1", SourcePosition(5, 1024, 2), 10))
        record = await offset_store.load("pg", "node1")
        assert (record.destination, record.partition_id) == ("pg", "node1")
        assert record.position == SourcePosition(5, 1024, 2)
        assert record.events_processed == 10
        assert record.updated_at.tzinfo is not None

    async def test_commits_accumulate_events_processed(self, offset_store):
        await offset_store.commit("pg", Checkpoint("node1", SourcePosition(5, 10), 10))
        await offset_store.commit("pg", Checkpoint("node1", SourcePosition(5, 20), 7))
        record = await offset_store.load("pg", "node1")
        assert record.position == SourcePosition(5, 20)
        assert record.events_processed == 17

    async def test_destinations_and_partitions_are_independent(self, offset_store):
        await offset_store.commit("pg", Checkpoint("node1", SourcePosition(1, 1), 1))
        await offset_store.commit("ch", Checkpoint("node1", SourcePosition(2, 2), 2))
        await offset_store.commit("pg", Checkpoint("node2", SourcePosition(3, 3), 3))
        assert (await offset_store.load("pg", "node1")).position == SourcePosition(1, 1)
        assert (await offset_store.load("ch", "node1")).position == SourcePosition(2, 2)
        assert (await offset_store.load("pg", "node2")).position == SourcePosition(3, 3)
        listed = await offset_store.list()
        assert [(r.destination, r.partition_id) for r in listed] == [
            ("ch", "node1"),
            ("pg", "node1"),
            ("pg", "node2"),
        ]

    async def test_large_segment_ids_survive(self, offset_store):
        position = SourcePosition(1_764_000_000_000_123, 2**31 - 1, 999)
        await offset_store.commit("pg", Checkpoint("node1", position, 1))
        assert (await offset_store.load("pg", "node1")).position == position

    async def test_offsets_survive_a_reopen(self, offset_store, reopen):
        await offset_store.commit("pg", Checkpoint("node1", SourcePosition(9, 9), 4))
        await offset_store.aclose()
        again = await reopen()
        record = await again.load("pg", "node1")
        assert (record.position, record.events_processed) == (SourcePosition(9, 9), 4)

    async def test_a_snapshot_name_survives(self, offset_store):
        position = SourcePosition(-1, 17, 3, "20260301T120000.000001Z")
        await offset_store.commit("pg", Checkpoint("snapshot/node1/shop.users", position, 0))
        record = await offset_store.load("pg", "snapshot/node1/shop.users")
        assert record.position == position
        assert record.position.snapshot == "20260301T120000.000001Z"

    async def test_snapshot_progress_is_kept_beside_positions(self, offset_store, reopen):
        """Snapshot progress is kept as records of the offset store (see
        :mod:`cdc_domain.snapshot_progress`): every store must hold it and give it back,
        and the stream's position is left as it was."""
        await offset_store.commit("pg", Checkpoint("node1", SourcePosition(4, 40), 9))
        progress = SnapshotProgress("node1")
        first, second = TokenRange(-(2**63), 0), TokenRange(0, 2**63 - 1)
        await progress.start(offset_store, "pg", "shop.users", run="r1", pieces=2, ranges=2)
        await progress.finish_range(
            offset_store, "pg", "shop.users", run="r1", token_range=first, rows=5, events=6
        )
        await offset_store.aclose()
        again = await reopen()
        (found,) = (await progress.load(again, "pg")).values()
        assert (found.run, found.pieces, found.planned) == ("r1", 2, 2)
        assert found.ranges == {first: 5}
        assert not found.finished
        await progress.finish_range(
            again, "pg", "shop.users", run="r1", token_range=second, rows=7, events=7
        )
        await progress.finish(again, "pg", "shop.users", run="r1", ranges=2)
        (found,) = (await progress.load(again, "pg")).values()
        assert found.finished
        assert found.rows == 12
        assert await progress.load(again, "ch") == {}
        stream = await again.load("pg", "node1")
        assert (stream.position, stream.events_processed) == (SourcePosition(4, 40), 9)
