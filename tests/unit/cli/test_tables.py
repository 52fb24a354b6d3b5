"""`kanal get` output: kubectl-style columns and ages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kanal.cli.tables import age, render

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-01-02T03:04:00Z", "5s"),
        ("2026-01-02T03:00:05Z", "4m"),
        ("2026-01-02T00:04:05Z", "3h"),
        ("2025-12-20T03:04:05Z", "13d"),
        ("garbage", "<unknown>"),
    ],
)
def test_age(stamp: str, expected: str) -> None:
    assert age(stamp, NOW) == expected


BROKER = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "metadata": {"name": "default", "namespace": "ns", "creationTimestamp": "2026-01-02T03:04:00Z"},
    "status": {
        "address": {"url": "http://h:1/ns/default"},
        "conditions": [{"type": "Ready", "status": "True", "reason": ""}],
    },
}


def test_broker_table_columns() -> None:
    lines = render("Broker", [BROKER], "", all_namespaces=False).splitlines()
    assert lines[0].split() == ["NAME", "URL", "AGE", "READY", "REASON"]
    assert lines[1].split()[0:2] == ["default", "http://h:1/ns/default"]
    assert lines[1].split()[3] == "True"


def test_all_namespaces_adds_namespace_column() -> None:
    lines = render("Broker", [BROKER], "", all_namespaces=True).splitlines()
    assert lines[0].split()[0] == "NAMESPACE" and lines[1].split()[0] == "ns"


def test_json_output_is_the_whole_object() -> None:
    assert json.loads(render("Broker", [BROKER], "json", all_namespaces=False)) == BROKER
