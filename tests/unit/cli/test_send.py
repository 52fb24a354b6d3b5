"""`kanal send` builds and validates its event before anything is sent."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from channel.errors import ValidationError
from kanal.cli.send import add_send_parser, build_event


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_send_parser(parser.add_subparsers())
    return parser.parse_args(["send", "--url", "http://127.0.0.1:1/", *argv])


BASE = ("--type", "order.created", "--source", "/shop")


@pytest.mark.parametrize(
    ("argv", "attributes", "data"),
    [
        (("--id", "o-1"), {"id": "o-1"}, None),
        (("--data", '{"n": 1}'), {"datacontenttype": "application/json"}, b'{"n": 1}'),
        (("--data", "plain"), {"datacontenttype": "text/plain"}, b"plain"),
        (
            ("--data", "<a/>", "--content-type", "application/xml"),
            {"datacontenttype": "application/xml"},
            b"<a/>",
        ),
        (("-e", "team=blue", "--extension", "region=north"), {"team": "blue", "region": "north"}, None),
        (
            ("--subject", "s1", "--time", "2026-01-01T00:00:00Z"),
            {"subject": "s1", "time": "2026-01-01T00:00:00Z"},
            None,
        ),
    ],
    ids=["id", "json-data", "text-data", "content-type", "extensions", "subject-time"],
)
def test_events(argv: tuple[str, ...], attributes: dict[str, str], data: bytes | None) -> None:
    event = build_event(_args(*BASE, *argv))
    assert event.attributes["type"] == "order.created" and event.attributes["source"] == "/shop"
    assert event.attributes["specversion"] == "1.0" and event.attributes["id"]
    assert {k: event.attributes[k] for k in attributes} == attributes
    assert event.data == data


def test_data_from_a_file_is_sent_byte_for_byte(tmp_path: Path) -> None:
    body = b'{"a":  1,\n "b": [1,2]}'
    (tmp_path / "e.json").write_bytes(body)
    event = build_event(_args(*BASE, "--data", f"@{tmp_path / 'e.json'}"))
    assert event.data == body and event.attributes["datacontenttype"] == "application/json"


def test_every_problem_is_listed() -> None:
    with pytest.raises(ValidationError) as info:
        build_event(_args("--type", "", "--source", "/s", "-e", "Bad=1", "-e", "noequals", "-e", "id=x"))
    text = "\n".join(str(p) for p in info.value.problems)
    for words in ("Bad", "noequals", "--id", "type"):
        assert words in text, text


def test_a_missing_file_is_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="cannot read"):
        build_event(_args(*BASE, "--data", "@/nonexistent/file.json"))
