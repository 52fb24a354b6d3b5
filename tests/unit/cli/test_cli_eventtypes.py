"""`kanal get eventtypes` and `kanal describe eventtype` text, from EventType documents (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channel.resources.eventtype import EventTypeKey, Observed, merge
from kanal.cli.eventtypes import describe_text, eventtypes_table, is_eventtype_kind

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T0 = int(datetime(2026, 1, 1, 11, 0, 0, tzinfo=UTC).timestamp() * 1000)


def _docs() -> list[dict[str, object]]:
    return merge(
        [
            Observed(
                EventTypeKey(
                    "Broker", "ns", "default", "com.example.order", "/shop", None, "application/json"
                ),
                "u",
                7,
                T0,
                T0 + 3_540_000,
                {"id": "o-1", "type": "com.example.order", "source": "/shop", "specversion": "1.0"},
                "a",
            ),
            Observed(
                EventTypeKey("Channel", "ns", "audit", "com.example.audit", "/log"), "v", 2, T0, T0, {}, "a"
            ),
        ]
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("eventtype", True), ("EventTypes", True), ("et", True), ("broker", False), (None, False)],
)
def test_kind_names(kind: str | None, expected: bool) -> None:
    assert is_eventtype_kind(kind) is expected


def test_table() -> None:
    docs = _docs()
    lines = eventtypes_table(docs, all_namespaces=False, now=NOW).splitlines()
    assert lines[0].split() == [
        "NAME",
        "TYPE",
        "SOURCE",
        "REFERENCE",
        "COUNT",
        "FIRST",
        "SEEN",
        "LAST",
        "SEEN",
    ]
    rows = sorted(line.split() for line in lines[1:])
    names = {d["metadata"]["name"]: d for d in docs}  # type: ignore[index]
    assert sorted(row[0] for row in rows) == sorted(names)
    assert sorted(row[1:] for row in rows) == [
        ["com.example.audit", "/log", "Channel/audit", "2", "60m", "60m"],
        ["com.example.order", "/shop", "Broker/default", "7", "60m", "60s"],
    ]


def test_table_across_namespaces() -> None:
    header = eventtypes_table(_docs(), all_namespaces=True, now=NOW).splitlines()[0]
    assert header.split()[:2] == ["NAMESPACE", "NAME"]


def test_describe_shows_attributes_and_counts_not_data() -> None:
    doc = next(d for d in _docs() if d["spec"]["reference"]["kind"] == "Broker")  # type: ignore[index]
    text = describe_text(doc, NOW)
    assert "Reference:     Broker default (eventing.knative.dev/v1)" in text
    assert "  type: com.example.order (required)" in text
    assert "  datacontenttype: application/json" in text
    assert "  Count:       7" in text
    assert "  First seen:  2026-01-01T11:00:00.000Z (60m ago)" in text
    assert "  id           o-1" in text
    assert "Data" not in text.replace("--show-data", "")
    assert describe_text(doc, NOW, '{"a": 1}').endswith(
        'Data (of the newest such event in the topic):\n{"a": 1}'
    )
