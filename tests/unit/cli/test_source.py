"""`kanal source run`: the environment it gives the command, and what --sink accepts."""

from __future__ import annotations

import json

import pytest

from kanal.cli.source import resolve_sink, source_environment


def test_environment_as_sinkbinding_gives_it() -> None:
    env = source_environment("http://sink/", ["team=blue", "region=north"])
    assert env["K_SINK"] == "http://sink/"
    assert json.loads(env["K_CE_OVERRIDES"]) == {"extensions": {"team": "blue", "region": "north"}}
    assert source_environment("http://sink/", []) == {"K_SINK": "http://sink/"}


@pytest.mark.parametrize("override", ["Team=blue", "noequals", "te-am=x"])
def test_bad_overrides(override: str) -> None:
    with pytest.raises(SystemExit, match="ce-override"):
        source_environment("http://sink/", [override])


@pytest.mark.parametrize(
    ("sink", "outcome"),
    [
        ("http://127.0.0.1:8080/ns/default", "http://127.0.0.1:8080/ns/default"),
        ("https://example.com/x", "https://example.com/x"),
        ("ftp://example.com/", SystemExit),
        ("default", SystemExit),
        ("broker:ns/default", SystemExit),  # needs the controller, and none is given here
    ],
    ids=["http", "https", "ftp", "bare-name", "broker-without-controller"],
)
def test_sinks(sink: str, outcome: str | type[SystemExit]) -> None:
    if isinstance(outcome, str):
        assert resolve_sink(sink, None) == outcome
    else:
        with pytest.raises(outcome):
            resolve_sink(sink, None)
