"""The ``filters`` dialects (FLT-06..08, FLT-14..27, D-01, D-02, D-04): matching and validation."""

from __future__ import annotations

import pytest

from channel.errors import ValidationError
from channel.filters import compile_trigger_filter

BASE = {"specversion": "1.0", "id": "1234", "source": "knativesource", "type": "dev.knative.example"}


def event(**overrides: str) -> dict[str, str]:
    return {**BASE, **overrides}


def matches(filters: list[object], received: dict[str, str]) -> bool:
    return compile_trigger_filter(None, filters).matches(received)


EXACT = [
    pytest.param(
        [{"exact": {"type": "dev.knative.example", "source": "knativesource"}}],
        event(),
        True,
        id="FLT-14 exact type and source",
    ),
    pytest.param([{"exact": {"type": "dev.knative.Example"}}], event(), False, id="exact is case-sensitive"),
    pytest.param(
        [{"exact": {"myextension": "my-extension-value"}}], event(), False, id="FLT-14 missing extension"
    ),
    pytest.param(
        [{"exact": {"myextension": "my-extension-value"}}],
        event(myextension="my-extension-value"),
        True,
        id="exact extension",
    ),
    pytest.param(
        [{"exact": {"type": "dev.knative.example", "source": "other"}}], event(), False, id="exact all keys"
    ),
    pytest.param(
        [{"exact": {"time": "2018-04-05T17:31:00Z"}}],
        event(time="2018-04-05T17:31:00Z"),
        True,
        id="FLT-27 exact time as received",
    ),
    pytest.param(
        [{"exact": {"time": "2018-04-05T17:31:00Z"}}],
        event(time="2018-04-05T19:31:00+02:00"),
        False,
        id="D-05 same instant other text",
    ),
    pytest.param(
        [{"exact": {"datamediatype": "application/json"}}],
        event(datacontenttype="application/json;charset=utf-8"),
        True,
        id="FLT-13 exact datamediatype",
    ),
]

PREFIX_SUFFIX = [
    pytest.param([{"prefix": {"type": "dev.knative"}}], event(), True, id="FLT-15 prefix"),
    pytest.param([{"prefix": {"type": "wrong.prefix"}}], event(), False, id="FLT-15 wrong prefix"),
    pytest.param([{"prefix": {"type": "dev.knative.example"}}], event(), True, id="prefix whole value"),
    pytest.param([{"prefix": {"type": "Dev.knative"}}], event(), False, id="prefix case-sensitive"),
    pytest.param([{"prefix": {"myext": "my"}}], event(), False, id="FLT-15 prefix missing extension"),
    pytest.param([{"prefix": {"myext": "my"}}], event(myext="my-value"), True, id="prefix extension"),
    pytest.param([{"suffix": {"type": "example"}}], event(), True, id="FLT-16 suffix"),
    pytest.param([{"suffix": {"type": "Example"}}], event(), False, id="suffix case-sensitive"),
    pytest.param([{"suffix": {"type": "wrong"}}], event(), False, id="suffix wrong"),
    pytest.param([{"suffix": {"myext": "value"}}], event(), False, id="suffix missing extension"),
    pytest.param(
        [{"prefix": {"type": "dev", "source": "knative"}}], event(), True, id="prefix several attributes"
    ),
    pytest.param(
        [{"prefix": {"type": "dev", "source": "other"}}], event(), False, id="prefix one attribute fails"
    ),
]

COMBINED = [
    pytest.param(
        [{"all": [{"exact": {"type": "dev.knative.example"}}, {"prefix": {"source": "knative"}}]}],
        event(),
        True,
        id="FLT-18 all true",
    ),
    pytest.param(
        [{"all": [{"exact": {"type": "dev.knative.example"}}, {"prefix": {"source": "other"}}]}],
        event(),
        False,
        id="FLT-18 all one false",
    ),
    pytest.param(
        [{"any": [{"exact": {"type": "type1"}}, {"prefix": {"type": "both"}}]}],
        event(type="type1"),
        True,
        id="FLT-19 any first",
    ),
    pytest.param(
        [{"any": [{"exact": {"type": "type1"}}, {"prefix": {"type": "both"}}]}],
        event(type="both.should.match"),
        True,
        id="FLT-19 any second",
    ),
    pytest.param(
        [{"any": [{"exact": {"type": "type1"}}, {"prefix": {"type": "both"}}]}],
        event(type="type2"),
        False,
        id="FLT-19 any none",
    ),
    pytest.param(
        [{"not": {"exact": {"type": "com.github.push"}}}],
        event(type="com.github.push"),
        False,
        id="FLT-20 not",
    ),
    pytest.param(
        [{"not": {"exact": {"type": "com.github.push"}}}],
        event(type="com.github.pull"),
        True,
        id="FLT-20 other",
    ),
    pytest.param([{"not": {"exact": {"myext": "x"}}}], event(), True, id="not of missing extension"),
    pytest.param(
        [{"not": {"not": {"any": [{"all": [{"suffix": {"type": "example"}}]}]}}}],
        event(),
        True,
        id="deep nesting",
    ),
    pytest.param(
        [{"any": [{"not": {"prefix": {"type": "dev"}}}, {"all": [{"exact": {"id": "1234"}}]}]}],
        event(),
        True,
        id="any of not and all",
    ),
]

CESQL = [
    pytest.param(
        [{"cesql": "myext = 'x' OR type = 'a'"}], event(type="a"), False, id="FLT-23 error poisons OR"
    ),
    pytest.param([{"cesql": "type = 'a' OR myext = 'x'"}], event(type="a"), True, id="FLT-23 short-circuit"),
    pytest.param([{"cesql": "type"}], event(), False, id="FLT-23 non-boolean result"),
    pytest.param([{"cesql": "1 + 1"}], event(), False, id="FLT-23 integer result"),
    pytest.param([{"cesql": "source = 'knativesource'"}], event(), True, id="cesql equality"),
    pytest.param([{"cesql": "myext = 'x' OR true"}], event(), False, id="missing attribute is an error"),
    pytest.param(
        [{"cesql": "knativebrokerttl < 30"}], event(knativebrokerttl="20"), True, id="FLT-25 implicit cast"
    ),
    pytest.param([{"cesql": "missingattribute < 5"}], event(), False, id="FLT-25 missing attribute"),
    pytest.param(
        [{"cesql": "missingattribute = missinsvalue"}], event(), False, id="FLT-25 missing both sides"
    ),
    pytest.param([{"cesql": "sequence = 5"}], event(sequence="5"), True, id="string extension cast to int"),
    pytest.param([{"cesql": "sequence = 5"}], event(sequence="five"), False, id="failed cast no match"),
    pytest.param([{"cesql": "NOT mybool"}], event(mybool="false"), True, id="boolean extension as string"),
    pytest.param([{"cesql": "EXISTS myext"}], event(myext=""), True, id="exists with empty value"),
    pytest.param([{"cesql": "1 / 0 = 0"}], event(), False, id="math error no match"),
]

# FLT-08: Knative's MultipleFiltersFeature.
MULTIPLE = [
    {"exact": {"type": "exact.prefix.suffix.event.type"}},
    {"prefix": {"type": "exact.prefix"}},
    {"suffix": {"type": "suffix.event.type"}},
    {"cesql": "type LIKE 'exact.prefix.suffix%'"},
]
FILTER_LIST = [
    pytest.param(MULTIPLE, event(type="exact.prefix.suffix.event.type"), True, id="FLT-08 all entries true"),
    pytest.param(MULTIPLE, event(type="exact.prefix.suffix.event"), False, id="FLT-08 suffix false"),
    pytest.param(
        MULTIPLE, event(type="exact.prefix.suffix.event.suffix.event.type"), False, id="FLT-08 exact false"
    ),
    pytest.param([], event(), True, id="FLT-06 empty list matches all"),
]


def _feature(ext: str) -> list[object]:
    """FLT-26: Knative's nested new-trigger-filters combinations on one extension."""
    return [
        {
            "all": [
                {"exact": {ext: "abc.def.ghi"}},
                {"prefix": {ext: "abc"}},
                {"suffix": {ext: "ghi"}},
                {"cesql": f"{ext} LIKE 'abc%'"},
            ]
        },
        {
            "any": [
                {"exact": {ext: "nope"}},
                {"prefix": {ext: "nope"}},
                {"suffix": {ext: "nope"}},
                {"not": {"cesql": f"{ext} = 'abc.def.ghi'"}},
                {"cesql": f"{ext} LIKE '%def%'"},
            ]
        },
    ]


NESTED = [
    pytest.param(_feature("myext"), event(myext="abc.def.ghi"), True, id="FLT-26 nested match"),
    pytest.param(_feature("myext"), event(myext="abc.xyz.ghi"), False, id="FLT-26 miss by exact"),
    pytest.param(_feature("myext"), event(), False, id="FLT-26 missing extension fails all dialects"),
]


@pytest.mark.parametrize(
    ("filters", "received", "expected"), [*EXACT, *PREFIX_SUFFIX, *COMBINED, *CESQL, *FILTER_LIST, *NESTED]
)
def test_dialect_matching(filters: list[object], received: dict[str, str], expected: bool) -> None:
    assert matches(filters, received) is expected


@pytest.mark.parametrize("dialect", ["exact", "prefix", "suffix", "cesql"])
def test_missing_extension_fails_every_dialect(dialect: str) -> None:
    spec: object = "myext = 'v'" if dialect == "cesql" else {"myext": "v"}
    assert not matches([{dialect: spec}], event())
    assert matches([{dialect: spec}], event(myext="v"))


@pytest.mark.parametrize(
    ("filters", "kept", "dropped"),
    [
        pytest.param([{"exact": {"type": "b"}}], "b", "a", id="FLT-07 filters replace filter"),
        pytest.param([], "a", "b", id="FLT-07 empty filters keep filter"),
        pytest.param(None, "a", "b", id="absent filters keep filter"),
    ],
)
def test_filters_replace_legacy_filter(filters: list[object] | None, kept: str, dropped: str) -> None:
    compiled = compile_trigger_filter({"attributes": {"type": "a"}}, filters)
    assert compiled.matches(event(type=kept))
    assert not compiled.matches(event(type=dropped))


INVALID = [
    pytest.param(
        [{"exact": {"type": ""}}], "spec.filters[0].exact.type", "must not be empty", id="FLT-17 exact"
    ),
    pytest.param(
        [{"prefix": {"type": ""}}], "spec.filters[0].prefix.type", "must not be empty", id="D-01 prefix"
    ),
    pytest.param(
        [{"suffix": {"type": None}}], "spec.filters[0].suffix.type", "must not be empty", id="D-01 null"
    ),
    pytest.param(
        [{"exact": {"": "x"}}], 'spec.filters[0].exact[""]', "must not be empty", id="D-01 empty key"
    ),
    pytest.param([{"exact": {}}], "spec.filters[0].exact", "at least one", id="empty exact map"),
    pytest.param([{"exact": "type"}], "spec.filters[0].exact", "map", id="exact not a map"),
    pytest.param([{"exact": {"Type": "x"}}], "spec.filters[0].exact.Type", "invalid attribute", id="FLT-12"),
    pytest.param([{"exact": {"type": 5}}], "spec.filters[0].exact.type", "must be a string", id="non-string"),
    pytest.param([{"all": []}], "spec.filters[0].all", "at least one", id="D-02 empty all"),
    pytest.param([{"any": []}], "spec.filters[0].any", "at least one", id="D-02 empty any"),
    pytest.param([{"any": {"exact": {"a": "b"}}}], "spec.filters[0].any", "list", id="any not a list"),
    pytest.param([{"not": []}], "spec.filters[0].not", "one filter object", id="not a list"),
    pytest.param([{"not": {}}], "spec.filters[0].not", "empty filter", id="not empty"),
    pytest.param(
        [{"exact": {"type": "a"}, "suffix": {"type": "b"}}],
        "spec.filters[0]",
        "multiple dialects found",
        id="FLT-21 two dialects",
    ),
    pytest.param([{"regex": {"type": ".*"}}], "spec.filters[0].regex", "unsupported", id="FLT-22 regex"),
    pytest.param([{}], "spec.filters[0]", "empty filter", id="empty object"),
    pytest.param(["exact"], "spec.filters[0]", "object", id="entry not an object"),
    pytest.param([{"cesql": "this is wrong"}], "spec.filters[0].cesql", "parse error", id="FLT-24 cesql"),
    pytest.param([{"cesql": ""}], "spec.filters[0].cesql", "parse error", id="empty cesql"),
    pytest.param([{"cesql": 5}], "spec.filters[0].cesql", "string", id="cesql not a string"),
    pytest.param(
        [{"cesql": "NOPE(type)"}], "spec.filters[0].cesql", "missing function", id="unknown function"
    ),
    pytest.param(
        [{"all": [{"any": [{"not": {"cesql": "x LIKE 1"}}]}]}],
        "spec.filters[0].all[0].any[0].not.cesql",
        "parse error",
        id="nested path",
    ),
    pytest.param("exact", "spec.filters", "list", id="filters not a list"),
]


@pytest.mark.parametrize(("filters", "path", "message"), INVALID)
def test_invalid_filters_rejected(filters: list[object], path: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        compile_trigger_filter(None, filters)
    problems = caught.value.problems
    assert path in [problem.path for problem in problems]
    assert any(message in problem.message for problem in problems if problem.path == path)


def test_multiple_dialects_message_suggests_all() -> None:
    with pytest.raises(ValidationError, match=r"multiple dialects found.*use `all` to combine"):
        compile_trigger_filter(None, [{"exact": {"type": "a"}, "prefix": {"type": "b"}}])


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        compile_trigger_filter(
            {"attributes": {"Bad": "x"}},
            [
                {"exact": {"type": ""}},
                {"regex": {"type": ".*"}},
                {"any": [{"cesql": "(("}, {"prefix": {"Source": "x"}}]},
            ],
        )
    assert sorted(problem.path for problem in caught.value.problems) == [
        "spec.filter.attributes.Bad",
        "spec.filters[0].exact.type",
        "spec.filters[1].regex",
        "spec.filters[2].any[0].cesql",
        "spec.filters[2].any[1].prefix.Source",
    ]


def test_validation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unsupported filter dialect"):
        compile_trigger_filter(None, [{"regex": {"type": ".*"}}])


@pytest.mark.parametrize(
    ("filters", "required"),
    [
        pytest.param([{"exact": {"type": "t", "source": "s"}}], {"type": "t", "source": "s"}, id="exact"),
        pytest.param(
            [{"all": [{"exact": {"type": "t"}}, {"prefix": {"source": "s"}}]}], {"type": "t"}, id="all"
        ),
        pytest.param([{"exact": {"type": "t"}}, {"suffix": {"id": "x"}}], {"type": "t"}, id="filters list"),
        pytest.param([{"cesql": "type = 't' AND source LIKE 's%'"}], {"type": "t"}, id="cesql conjunct"),
        pytest.param([{"cesql": "'t' = type"}], {"type": "t"}, id="cesql reversed"),
        pytest.param([{"cesql": "type = 't' OR source = 's'"}], {}, id="cesql disjunction"),
        pytest.param([{"cesql": "datamediatype = 'a/b'"}], {}, id="cesql aliased name not indexed"),
        pytest.param([{"any": [{"exact": {"type": "t"}}]}], {}, id="any"),
        pytest.param([{"not": {"exact": {"type": "t"}}}], {}, id="not"),
        pytest.param([{"prefix": {"type": "t"}}], {}, id="prefix"),
    ],
)
def test_exact_requirements(filters: list[object], required: dict[str, str]) -> None:
    compiled = compile_trigger_filter(None, filters)
    assert dict(compiled.exact_requirements) == required  # type: ignore[attr-defined]
