"""Attribute lookup (FLT-13) and the legacy ``filter.attributes`` map (FLT-10..12, D-03)."""

from __future__ import annotations

import pytest

from channel.errors import ValidationError
from channel.filters import Attributes, compile_trigger_filter, lookup

EVENT: dict[str, str] = {
    "specversion": "1.0",
    "id": "1234",
    "source": "/example/source",
    "type": "dev.knative.example",
}


def event(**extra: str) -> dict[str, str]:
    return {**EVENT, **extra}


@pytest.mark.parametrize(
    ("attributes", "name", "expected"),
    [
        pytest.param(event(), "type", "dev.knative.example", id="core attribute"),
        pytest.param(event(), "subject", None, id="absent optional attribute"),
        pytest.param(event(myext="v"), "myext", "v", id="extension"),
        pytest.param(
            event(datacontenttype="application/json; charset=utf-8"),
            "datamediatype",
            "application/json",
            id="datamediatype strips parameters",
        ),
        pytest.param(
            event(datacontenttype="text/plain"), "datamediatype", "text/plain", id="datamediatype plain"
        ),
        pytest.param(event(), "datamediatype", None, id="datamediatype without content type"),
        pytest.param(
            event(dataschema="http://s"), "schemaurl", "http://s", id="schemaurl aliases dataschema"
        ),
        pytest.param(
            event(schemaurl="http://s"), "dataschema", "http://s", id="dataschema reads 0.3 schemaurl"
        ),
        pytest.param(
            event(time="2018-04-05T17:31:00+02:00"),
            "time",
            "2018-04-05T17:31:00+02:00",
            id="time as received",
        ),
    ],
)
def test_lookup(attributes: Attributes, name: str, expected: str | None) -> None:
    assert lookup(attributes, name) == expected


LEGACY_CASES = [
    # (filter.attributes, event attributes, matches)
    pytest.param({"type": "greeting"}, event(type="greeting"), True, id="FLT-10 exact type"),
    pytest.param({"type": "greeting"}, event(type="Greeting"), False, id="FLT-10 case-sensitive"),
    pytest.param({}, event(), True, id="empty map matches all"),
    pytest.param(
        {"type": "t", "myextension": ""}, event(type="t"), False, id="FLT-11 empty value needs attribute"
    ),
    pytest.param(
        {"type": "t", "myextension": ""},
        event(type="t", myextension="my-extension-value"),
        True,
        id="FLT-11 empty value any value",
    ),
    pytest.param({"subject": ""}, event(), False, id="FLT-11 subject absent"),
    pytest.param({"subject": ""}, event(subject=""), True, id="D-03 present and empty matches"),
    pytest.param({"subject": None}, event(subject="x"), True, id="null value means empty"),
    pytest.param(
        {"type": "dev.knative.example", "source": "/example/source"}, event(), True, id="all keys ANDed"
    ),
    pytest.param({"type": "dev.knative.example", "source": "/other"}, event(), False, id="one key differs"),
    pytest.param({"myext": "v"}, event(), False, id="missing extension"),
    pytest.param({"myext": "v"}, event(myext="v"), True, id="extension equal"),
    pytest.param(
        {"datamediatype": "application/json"},
        event(datacontenttype="application/json; charset=utf-8"),
        True,
        id="FLT-13 datamediatype",
    ),
    pytest.param({"schemaurl": "http://s"}, event(dataschema="http://s"), True, id="FLT-13 schemaurl"),
    pytest.param(
        {"time": "2018-04-05T17:31:00Z"}, event(time="2018-04-05T17:31:00Z"), True, id="FLT-27 time exact"
    ),
    pytest.param(
        {"time": "2018-04-05T17:31:00Z"},
        event(time="2018-04-05T17:31:00.000Z"),
        False,
        id="D-05 time compared as received",
    ),
]


@pytest.mark.parametrize(("attributes", "received", "expected"), LEGACY_CASES)
def test_legacy_attributes(attributes: dict[str, str | None], received: Attributes, expected: bool) -> None:
    compiled = compile_trigger_filter({"attributes": attributes}, None)
    assert compiled.matches(received) is expected


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(None, id="no filter"),
        pytest.param({}, id="empty filter"),
        pytest.param({"attributes": None}, id="null attributes"),
        pytest.param({"attributes": {}}, id="empty attributes"),
    ],
)
def test_no_legacy_filter_matches_everything(spec: dict[str, object] | None) -> None:
    compiled = compile_trigger_filter(spec, None)
    assert compiled.matches(event())
    assert compiled.matches({"specversion": "1.0", "id": "x", "source": "y", "type": "z"})


@pytest.mark.parametrize(
    ("key", "path"),
    [
        pytest.param("Type", "spec.filter.attributes.Type", id="upper case"),
        pytest.param("0invalid", "spec.filter.attributes.0invalid", id="leading digit"),
        pytest.param("invALID", "spec.filter.attributes.invALID", id="mixed case"),
        pytest.param("my-ext", "spec.filter.attributes.my-ext", id="dash"),
        pytest.param("", 'spec.filter.attributes[""]', id="empty"),
        pytest.param("a.b", 'spec.filter.attributes["a.b"]', id="dotted key quoted"),
    ],
)
def test_legacy_key_rejected_naming_it(key: str, path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        compile_trigger_filter({"attributes": {key: "x"}}, None)
    assert [problem.path for problem in caught.value.problems] == [path]


def test_legacy_reports_every_problem() -> None:
    with pytest.raises(ValidationError) as caught:
        compile_trigger_filter({"attributes": {"Type": "x", "ok": 1, "fine": "y"}, "extra": 1}, None)
    assert sorted(problem.path for problem in caught.value.problems) == [
        "spec.filter.attributes.Type",
        "spec.filter.attributes.ok",
        "spec.filter.extra",
    ]


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        pytest.param("type=x", "spec.filter", id="filter not an object"),
        pytest.param({"attributes": ["type"]}, "spec.filter.attributes", id="attributes not a map"),
    ],
)
def test_legacy_shape_rejected(spec: object, path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        compile_trigger_filter(spec, None)  # type: ignore[arg-type]
    assert [problem.path for problem in caught.value.problems] == [path]


def test_custom_path_prefix() -> None:
    with pytest.raises(ValidationError) as caught:
        compile_trigger_filter({"attributes": {"Type": "x"}}, None, path="triggers[2].spec")
    assert caught.value.problems[0].path == "triggers[2].spec.filter.attributes.Type"


def test_legacy_exposes_exact_requirements() -> None:
    compiled = compile_trigger_filter({"attributes": {"type": "t", "source": "s", "myext": ""}}, None)
    assert dict(compiled.exact_requirements) == {"type": "t", "source": "s"}  # type: ignore[attr-defined]
