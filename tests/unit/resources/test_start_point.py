"""A start point as the controller records it in a status annotation and the dispatcher reads it."""

from __future__ import annotations

import pytest

from channel.resources.model import Status
from channel.resources.start import START_OFFSETS, StartPoint


@pytest.mark.parametrize(
    ("text", "offsets"),
    [
        pytest.param("0:150,1:147,2:153", {0: 150, 1: 147, 2: 153}, id="every-partition"),
        pytest.param("2:3, 0:1", {0: 1, 2: 3}, id="any-order-and-spaces"),
        pytest.param("", {}, id="empty-topic-did-not-exist"),
    ],
)
def test_parse_and_write_back(text: str, offsets: dict[int, int]) -> None:
    start = StartPoint.parse(text)
    assert start == StartPoint.of(offsets)
    assert StartPoint.parse(str(start)) == start


@pytest.mark.parametrize("text", ["0", "0:", "a:1", "0:-1", "0:1;1:2"])
def test_unreadable_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="partition:offset"):
        StartPoint.parse(text)


@pytest.mark.parametrize(
    ("partition", "log_start", "expected"),
    [
        pytest.param(0, 0, 150, id="listed"),
        pytest.param(0, 200, 200, id="listed-but-deleted-by-retention"),
        pytest.param(3, 0, 0, id="partition-added-later-all-of-it"),
        pytest.param(3, 40, 40, id="partition-added-later-from-its-log-start"),
    ],
)
def test_where_a_partition_begins(partition: int, log_start: int, expected: int) -> None:
    assert StartPoint.of({0: 150, 1: 147, 2: 153}).offset(partition, log_start) == expected


def test_kept_in_the_status_annotations_beside_others() -> None:
    status = Status(annotations={"other": "x"})
    recorded = StartPoint.of({0: 5, 1: 7}).in_status(status)
    assert recorded.annotations == {"other": "x", START_OFFSETS: "0:5,1:7"}
    assert StartPoint.from_status(recorded) == StartPoint.of({0: 5, 1: 7})
    # Serialised as Knative's status.annotations, and read back the same.
    document = recorded.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert document["annotations"][START_OFFSETS] == "0:5,1:7"
    assert Status.model_validate(document) == recorded


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(Status(), id="none-recorded"),
        pytest.param(Status(annotations={START_OFFSETS: "garbled"}), id="unreadable"),
    ],
)
def test_a_status_without_a_readable_start_point_has_none(status: Status) -> None:
    assert StartPoint.from_status(status) is None
