"""A Trigger's (or Subscription's) start point: where its share of its topic begins.

A new Trigger gets exactly the events accepted after it was created. Its `creationTimestamp`
cannot tell which those are: it has whole seconds (Knative's format, kept as it is), and it is
the controller's clock while each record carries the ingress's. So when the controller creates a
Trigger it reads the end of each partition of its Broker's topic, the offset the next accepted
event will get (`channel.control.ends`), and records them in the Trigger's status as the status
annotation `kanal.dev/start-offsets`, `0:150,1:147,2:153` (partition:offset, the form `kanal
replay --from` takes). Knative's `status.annotations` is where a reconciler keeps state of its
own; no manifest can set it, and `metadata` stays as Knative shows it. Kept in the resource log,
the start point outlives every dispatcher restart and rebalance, and offsets cannot be skewed by
clocks.

A partition the start point does not list did not exist when the Trigger was created, so all of
it is the Trigger's; an empty value means its topic did not exist then. A Broker deleted takes
its topic with it, so its remaining Triggers' start points become empty: a topic of that name
made later is a new one. The dispatcher uses the start point only on partitions where the
Trigger has committed nothing yet. A Trigger without one (created before Kanal recorded start
points) starts at its creation time (`dispatcher.offsets.CreationFloor`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from channel.resources.model import Status

__all__ = ["START_OFFSETS", "StartPoint"]

START_OFFSETS: Final = "kanal.dev/start-offsets"


@dataclass(frozen=True, slots=True)
class StartPoint:
    """Per partition, the offset of the first record that is the Trigger's (sorted by partition)."""

    offsets: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, offsets: Mapping[int, int]) -> StartPoint:
        return cls(tuple(sorted(offsets.items())))

    @classmethod
    def parse(cls, text: str) -> StartPoint:
        """`0:150,1:147` as a start point; `` (empty) for none listed. Raises ValueError."""
        pairs: dict[int, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            partition, sep, offset = part.partition(":")
            if not sep or not partition.strip().isdigit() or not offset.strip().isdigit():
                raise ValueError(f"{text!r} is not partition:offset pairs (0:150,1:147)")
            pairs[int(partition)] = int(offset)
        return cls.of(pairs)

    @classmethod
    def from_status(cls, status: Status) -> StartPoint | None:
        """The start point recorded in `status`; None if it has none (or an unreadable one)."""
        text = (status.annotations or {}).get(START_OFFSETS)
        if text is None:
            return None
        try:
            return cls.parse(text)
        except ValueError:
            return None

    def __str__(self) -> str:
        return ",".join(f"{partition}:{offset}" for partition, offset in self.offsets)

    def in_status(self, status: Status) -> Status:
        """`status` with this start point recorded."""
        annotations = {**(status.annotations or {}), START_OFFSETS: str(self)}
        return status.model_copy(update={"annotations": annotations})

    def offset(self, partition: int, log_start: int = 0) -> int:
        """Where the Trigger begins on `partition`, never before `log_start`: older records are
        gone, and a reader sent before the start of the log is moved to its end instead."""
        for listed, offset in self.offsets:
            if listed == partition:
                return max(offset, log_start)
        return log_start
