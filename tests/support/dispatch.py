"""Stand-ins for the dispatcher's unit tests: a Trigger's plan and a scripted subscriber side."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from channel.events import CloudEvent
from dispatcher.delivery import Attempt
from dispatcher.plan import Plan

__all__ = ["ScriptedPoster", "trigger_plan"]


class ScriptedPoster:
    """A Poster (dispatcher.delivery) answering each POST with `answer(url, event)`; it keeps
    what was posted, and `posted` tells that a POST arrived."""

    def __init__(self, answer: Callable[[str, CloudEvent], Attempt]) -> None:
        self.answer = answer
        self.posts: list[tuple[str, CloudEvent]] = []
        self.headers: list[Mapping[str, str]] = []  # each POST's headers, in order
        self.posted = asyncio.Event()

    async def post(
        self,
        url: str,
        event: CloudEvent,
        *,
        timeout: float,
        headers: Mapping[str, str],
        structured: bool = False,
        ca_certs: str | None = None,
    ) -> Attempt:
        self.posts.append((url, event))
        self.headers.append(dict(headers))
        self.posted.set()
        return self.answer(url, event)


def trigger_plan(**fields: Any) -> Plan:
    """A Trigger `ns/t` on Broker `default`, with `fields` (subscriber and retry at least)."""
    defaults: dict[str, Any] = {
        "kind": "trigger",
        "key": "ns/t",
        "namespace": "ns",
        "name": "t",
        "group": "group",
        "topic": "knative-broker.ns.default",
        "created_ms": 0,
        "reply_to": None,
        "reply_topic": None,
        "dead_letter": None,
        "parent": "default",
    }
    return Plan(**{**defaults, **fields})
