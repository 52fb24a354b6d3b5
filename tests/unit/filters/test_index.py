"""FilterIndex: same answers as trying every filter, without evaluating impossible ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel.filters import Attributes, Filter, FilterIndex, compile_trigger_filter

BASE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


def event(**overrides: str) -> dict[str, str]:
    return {**BASE, **overrides}


def dialect(*filters: object) -> Filter:
    return compile_trigger_filter(None, list(filters))


@dataclass
class CountingFilter:
    """A fake indexable filter that records how often it is evaluated."""

    exact_requirements: Mapping[str, str]
    calls: int = field(default=0)

    def matches(self, attributes: Attributes) -> bool:
        self.calls += 1
        return all(attributes.get(name) == value for name, value in self.exact_requirements.items())


def test_only_candidates_are_evaluated() -> None:
    index: FilterIndex[int] = FilterIndex()
    counters = [CountingFilter({"type": f"type.{n}"}) for n in range(1000)]
    for n, counter in enumerate(counters):
        index.add(n, counter)

    assert index.match(event(type="type.500")) == [500]
    assert index.match(event(type="unknown")) == []
    assert [counter.calls for counter in counters if counter.calls] == [1]
    assert counters[500].calls == 1


def test_unindexable_filters_always_evaluated() -> None:
    index: FilterIndex[str] = FilterIndex()
    index.add("prefix", dialect({"prefix": {"type": "com."}}))
    index.add("exact", dialect({"exact": {"type": "com.a"}}))
    index.add("all", compile_trigger_filter(None, None))
    index.add("not", dialect({"not": {"exact": {"type": "com.a"}}}))

    assert index.match(event(type="com.a")) == ["prefix", "exact", "all"]
    assert index.match(event(type="com.b")) == ["prefix", "all", "not"]
    assert index.match(event(type="org.c")) == ["all", "not"]


def test_candidates_are_checked_in_full() -> None:
    index: FilterIndex[str] = FilterIndex()
    index.add("both", dialect({"exact": {"type": "t", "source": "/s"}}))
    index.add("cesql", dialect({"cesql": "type = 't' AND myext = 'x'"}))
    index.add("legacy", compile_trigger_filter({"attributes": {"type": "t", "subject": ""}}, None))

    assert index.match(event()) == ["both"]
    assert index.match(event(source="/other", myext="x", subject="")) == ["cesql", "legacy"]


def test_results_follow_first_add_order() -> None:
    index: FilterIndex[str] = FilterIndex()
    index.add("c", dialect({"prefix": {"type": "t"}}))
    index.add("a", dialect({"exact": {"type": "t"}}))
    index.add("b", dialect({"exact": {"source": "/s"}}))
    index.add("c", dialect({"exact": {"id": "1"}}))  # replaced: keeps its place

    assert index.match(event()) == ["c", "a", "b"]


def test_removed_key_added_again_goes_last() -> None:
    index: FilterIndex[str] = FilterIndex()
    index.add("a", dialect({"exact": {"type": "t"}}))
    index.add("b", dialect({"exact": {"type": "t"}}))
    index.remove("a")
    index.add("a", dialect({"exact": {"type": "t"}}))
    assert index.match(event()) == ["b", "a"]


def test_add_replaces_and_remove_forgets() -> None:
    index: FilterIndex[str] = FilterIndex()
    index.add("k", dialect({"exact": {"type": "a"}}))
    index.add("k", dialect({"exact": {"type": "b"}}))
    assert len(index) == 1
    assert index.match(event(type="a")) == []
    assert index.match(event(type="b")) == ["k"]

    index.remove("k")
    index.remove("k")  # absent: nothing happens
    assert len(index) == 0
    assert "k" not in index
    assert index.match(event(type="b")) == []


def test_clear() -> None:
    index: FilterIndex[str] = FilterIndex()
    index.add("a", dialect({"exact": {"type": "t"}}))
    index.add("b", dialect({"prefix": {"type": "t"}}))
    index.clear()
    assert len(index) == 0
    assert index.match(event()) == []


def test_same_trigger_filter_twice_gives_two_keys() -> None:
    """FLT-02: two Triggers with the same filter both match."""
    index: FilterIndex[str] = FilterIndex()
    shared = dialect({"exact": {"type": "t"}})
    index.add("t1", shared)
    index.add("t2", shared)
    assert index.match(event()) == ["t1", "t2"]


def test_derived_attribute_names_are_looked_up() -> None:
    index: FilterIndex[str] = FilterIndex()
    index.add("json", dialect({"exact": {"datamediatype": "application/json"}}))
    index.add("schema", compile_trigger_filter({"attributes": {"schemaurl": "http://s"}}, None))

    assert index.match(event(datacontenttype="application/json; charset=utf-8")) == ["json"]
    assert index.match(event(dataschema="http://s")) == ["schema"]


def test_prefers_type_when_several_values_are_required() -> None:
    index: FilterIndex[str] = FilterIndex()
    counter = CountingFilter({"source": "/s", "type": "t", "id": "1"})
    index.add("k", counter)
    index.match(event(type="other"))
    assert counter.calls == 0
    assert index.match(event()) == ["k"]


# Filters and events over a small vocabulary, so that matches happen often.
VALUES = st.sampled_from(["a", "b", "ab"])
NAMES = st.sampled_from(["type", "source", "myext"])
LEAF = st.one_of(
    st.builds(lambda n, v: {"exact": {n: v}}, NAMES, VALUES),
    st.builds(lambda n, v: {"prefix": {n: v}}, NAMES, VALUES),
    st.builds(lambda n, v: {"cesql": f"{n} = '{v}'"}, NAMES, VALUES),
)
FILTER = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)
EVENT = st.fixed_dictionaries(
    {"specversion": st.just("1.0"), "id": st.just("1"), "type": VALUES, "source": VALUES},
    optional={"myext": VALUES},
)


@settings(database=None, max_examples=200, deadline=None)
@given(
    filters=st.lists(st.lists(FILTER, max_size=3), min_size=1, max_size=12),
    events=st.lists(EVENT, min_size=1, max_size=5),
)
def test_index_agrees_with_trying_every_filter(
    filters: list[list[object]], events: list[dict[str, str]]
) -> None:
    compiled = [compile_trigger_filter(None, entry) for entry in filters]
    index: FilterIndex[int] = FilterIndex()
    for key, one in enumerate(compiled):
        index.add(key, one)
    for received in events:
        assert index.match(received) == [key for key, one in enumerate(compiled) if one.matches(received)]


@pytest.mark.parametrize("removed", [0, 5, 9])
def test_removal_keeps_agreement(removed: int) -> None:
    index: FilterIndex[int] = FilterIndex()
    for key in range(10):
        index.add(key, dialect({"exact": {"type": "t"}}) if key % 2 else dialect({"prefix": {"type": "t"}}))
    index.remove(removed)
    assert index.match(event()) == [key for key in range(10) if key != removed]
