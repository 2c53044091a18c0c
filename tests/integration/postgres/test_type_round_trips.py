"""Every CQL type's edge values through the PostgreSQL mirror and back, unchanged."""

from __future__ import annotations

import math

import pytest

from cdc_domain.errors import EventsRejectedError
from tests.integration.postgres import type_cases
from tests.integration.postgres.mirror_model import batch_of, reference

TABLE = "rt.types"


@pytest.fixture
async def mirror(make_pg_sink):
    sink, _ = await make_pg_sink(TABLE)
    yield sink
    await sink.aclose()


async def test_every_type_round_trips(mirror):
    events = type_cases.events()
    await mirror.write(batch_of(events, type_cases.schema()))
    assert await mirror.rows(TABLE) == reference(events, TABLE)


async def test_nan_round_trips(mirror):
    await mirror.write(batch_of([type_cases.nan_event()], type_cases.schema()))
    (row,) = (await mirror.rows(TABLE)).values()
    assert math.isnan(row["c_float"])
    assert math.isnan(row["c_double"])


async def test_a_value_the_column_cannot_hold_exactly_rejects_only_its_event(mirror):
    good, lossy = type_cases.events()[0], type_cases.nanosecond_duration_event()
    with pytest.raises(EventsRejectedError) as rejected:
        await mirror.write(batch_of([good, lossy], type_cases.schema()))
    assert rejected.value.event_ids == (lossy.event_id,)
    assert await mirror.rows(TABLE) == {}
