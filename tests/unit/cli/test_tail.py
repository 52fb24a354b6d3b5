"""`kanal tail`'s pure parts: the CESQL filter and the two output formats."""

from __future__ import annotations

import json

import pytest

from channel.errors import ValidationError
from channel.events import CloudEvent
from kanal.cli.tail import event_filter, format_line

EVENT = CloudEvent(
    {"specversion": "1.0", "id": "1", "source": "shop", "type": "order.created", "amount": "150"},
    b'{"n": 1}',
)


@pytest.mark.parametrize(
    ("expression", "kept"),
    [
        (None, True),
        ("type = 'order.created'", True),
        ("type = 'order.paid'", False),
        ("type LIKE 'order.%' AND INT(amount) > 100", True),
        ("missing = 'x'", False),
    ],
    ids=["none", "equal", "other", "like-and-int", "missing-attribute"],
)
def test_filter(expression: str | None, kept: bool) -> None:
    matcher = event_filter(expression)
    assert (matcher is None or matcher.matches(EVENT.attributes)) is kept


def test_a_bad_filter_is_refused_with_where() -> None:
    with pytest.raises(ValidationError) as caught:
        event_filter("type = ")
    assert str(caught.value.problems[0]).startswith("--filter")


def test_formats() -> None:
    assert json.loads(format_line(EVENT, "json"))["type"] == "order.created"
    assert format_line(EVENT, "display").splitlines()[:2] == ["☁️  cloudevents.Event", "Context Attributes,"]
