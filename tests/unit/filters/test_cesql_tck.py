"""Runs the CESQL v1.0.0 conformance suite (TCK) against Kanal's engine, one case per test.

The TCK's 18 YAML files are vendored unchanged in ``cesql-tck/`` next to this module (origin
and licence in its ``NOTICE``); set ``KANAL_CESQL_TCK_DIR`` to run another copy instead. A
missing directory or a case count other than 275 fails collection (an error, not a skip), so a
lost file cannot pass silently. Loading avoids the YAML 1.1 pitfalls: expressions and case names
are read as raw text (``yaml.BaseLoader``), timestamps stay strings, and results are compared
with their type (``True`` is not ``1``). Engine semantics are tested through ``parse_cesql``,
which leaves unknown functions to evaluation (``missingFunction``) as the TCK expects;
``compile_cesql`` rejects them before that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from channel.errors import ValidationError
from channel.filters.cesql import parse_cesql

TCK_CASES = 275
BASE_EVENT = {"specversion": "1.0", "id": "tck-id", "source": "/tck/source", "type": "tck.type"}
ERRATUM = (
    "not_operator.yaml::Invalid int cast",
    "TCK erratum: expects NOT 10 -> true with a cast error, but spec §3.7 makes Integer->Boolean "
    "a supported cast (non-zero is true), so Kanal gives false without error; cloudevents/sdk-go "
    "corrected its copy of this case (decision D-12).",
)


class _TextTimestampLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: ``time`` values stay the strings sent."""


_TextTimestampLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class TckCase:
    case_id: str
    expression: str
    spec: dict[str, Any]


def _tck_dir() -> Path:
    override = os.environ.get("KANAL_CESQL_TCK_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "cesql-tck"


def _load_cases() -> list[TckCase]:
    directory = _tck_dir()
    if not directory.is_dir():
        # Fails collection (an error, never a skip): a lost suite must not pass silently.
        pytest.fail(
            f"CESQL TCK directory not found: {directory}; "
            "set KANAL_CESQL_TCK_DIR to the folder holding the 18 TCK YAML files",
            pytrace=False,
        )
    cases: list[TckCase] = []
    for path in sorted(directory.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        typed = yaml.load(text, Loader=_TextTimestampLoader)
        raw = yaml.load(text, Loader=yaml.BaseLoader)
        for spec, raw_spec in zip(typed["tests"], raw["tests"], strict=True):
            # Names too must come raw: 'TRUE' and 'true' both load as the bool True.
            case_id = f"{path.name}::{raw_spec['name']}"
            cases.append(TckCase(case_id, raw_spec["expression"], spec))
    ids = {case.case_id for case in cases}
    if len(cases) != TCK_CASES or len(ids) != TCK_CASES or ERRATUM[0] not in ids:
        pytest.fail(
            f"CESQL TCK in {directory} has {len(cases)} cases ({len(ids)} distinct ids), "
            f"expected {TCK_CASES} including {ERRATUM[0]!r}",
            pytrace=False,
        )
    return cases


CASES = _load_cases()


def _params() -> list[Any]:
    params = []
    for case in CASES:
        marks = []
        if case.case_id == ERRATUM[0]:
            marks.append(pytest.mark.xfail(strict=True, reason=ERRATUM[1]))
        params.append(pytest.param(case, id=case.case_id, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_tck_case(case: TckCase) -> None:
    spec = case.spec
    expected_error = spec.get("error")
    if expected_error == "parse":
        with pytest.raises(ValidationError, match="parse error"):
            parse_cesql(case.expression)
        return

    attributes = dict(spec["event"]) if "event" in spec else dict(BASE_EVENT)
    attributes.update(spec.get("eventOverrides") or {})

    value, errors = parse_cesql(case.expression).evaluate(attributes)

    expected = spec["result"]
    assert type(value) is type(expected), f"{value!r} is not of the type of {expected!r}"
    assert value == expected
    if expected_error is None:
        assert errors == []
    else:
        assert [error.kind for error in errors] == [expected_error]
