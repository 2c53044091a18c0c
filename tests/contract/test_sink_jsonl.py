import json

import attrs
import pytest

from cdc_adapters.local import JsonLinesSink
from cdc_domain.events import SourcePosition
from tests.contract.sink_contract import SinkContract


class TestJsonLinesSink(SinkContract):
    semantics = "log"

    @pytest.fixture
    def path(self, tmp_path):
        return tmp_path / "changes.jsonl"

    @pytest.fixture
    def sink(self, path):
        return JsonLinesSink(str(path), name="jsonl")

    @pytest.fixture
    def read_back(self, path):
        async def read(_schema=None):
            if not path.exists():
                return []
            records = [json.loads(line) for line in path.read_text().splitlines()]
            return [r["event_id"] for r in records if r.get("type") != "schema_change"]

        return read


async def test_a_restarted_sink_skips_what_the_file_already_holds(tmp_path):
    from tests.contract.sink_contract import HISTORY, batch

    path = tmp_path / "changes.jsonl"
    await JsonLinesSink(str(path)).write(batch(HISTORY[:5]))
    await JsonLinesSink(str(path)).write(batch(HISTORY[2:]))
    ids = [json.loads(line)["event_id"] for line in path.read_text().splitlines()]
    assert ids == [e.event_id for e in HISTORY]


async def test_a_torn_last_line_is_ignored_on_restart(tmp_path):
    from tests.contract.sink_contract import HISTORY, batch

    path = tmp_path / "changes.jsonl"
    await JsonLinesSink(str(path)).write(batch(HISTORY[:2]))
    with path.open("a") as handle:
        handle.write('{"event_id": "torn')
    await JsonLinesSink(str(path)).write(batch(HISTORY[2:3]))
    text = path.read_text()
    assert text.count(HISTORY[2].event_id) == 1


async def test_dash_means_stdout(capsys):
    from tests.contract.sink_contract import HISTORY, batch

    await JsonLinesSink("-").write(batch(HISTORY[:2]))
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [e.event_id for e in HISTORY[:2]]


async def test_snapshot_events_are_appended_whatever_the_streams_position(tmp_path):
    from tests.contract.sink_contract import HISTORY, batch

    path = tmp_path / "changes.jsonl"
    snapshot = [
        attrs.evolve(e, event_id=f"s{i}", position=SourcePosition(-1, 0, i, "r1"))
        for i, e in enumerate(HISTORY[:2])
    ]
    await JsonLinesSink(str(path)).write(batch(HISTORY[:3]))
    await JsonLinesSink(str(path)).write(batch(snapshot))
    restarted = JsonLinesSink(str(path))
    await restarted.write(batch(HISTORY[2:4]))
    ids = [json.loads(line)["event_id"] for line in path.read_text().splitlines()]
    assert ids == [e.event_id for e in HISTORY[:3]] + ["s0", "s1", HISTORY[3].event_id]
