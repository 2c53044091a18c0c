"""Set elements keep one canonical order in jsonb (no server needed): writers of the
same set must write the same document, whichever interpreter built it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cdc_adapters.postgres.values import canonical_json, canonical_text, to_json
from cdc_domain.cql_types import parse_cql_type

SETS = {
    "set<text>": st.frozensets(st.text()),
    "set<varint>": st.frozensets(st.integers(-(2**80), 2**80)),
    "set<boolean>": st.frozensets(st.booleans()),
    "set<frozen<list<text>>>": st.frozensets(st.lists(st.text(max_size=3)).map(tuple)),
}


@given(st.sampled_from(sorted(SETS)).flatmap(lambda t: st.tuples(st.just(t), SETS[t])))
def test_set_elements_are_ordered_by_their_canonical_json(case):
    cql, value = case
    encoded = to_json(parse_cql_type(cql), value)
    assert encoded == sorted(encoded, key=canonical_json)


@given(st.one_of(st.text(), st.integers(), st.booleans(), st.none(), st.lists(st.text())))
def test_canonical_text_is_canonical_json(value):
    assert canonical_text(value) == canonical_json(value)
