"""Sending test events to a real ingress."""

from __future__ import annotations

import json
from collections.abc import Iterable

import aiohttp


async def post_batch(
    url: str, events: Iterable[tuple[str, str]], source: str, **extensions: str
) -> list[str]:
    """POST (id, type) pairs as one batched-mode request (data: {"id": id}, and `extensions` on
    every event); asserts the 202. Returns the ids sent."""
    batch = [
        {"specversion": "1.0", "id": i, "type": t, "source": source, "data": {"id": i}, **extensions}
        for i, t in events
    ]
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=json.dumps(batch), headers={"content-type": "application/cloudevents-batch+json"}
        ) as response,
    ):
        assert response.status == 202, await response.text()
    return [str(e["id"]) for e in batch]


async def post_event(
    url: str, event_id: str, event_type: str, source: str, body: bytes = b"{}", **headers: str
) -> None:
    """POST one binary-mode event (JSON data unless `headers` say otherwise; `headers` may also
    replace any ce- header); asserts the 202."""
    sent = {
        "ce-id": event_id,
        "ce-specversion": "1.0",
        "ce-type": event_type,
        "ce-source": source,
        "content-type": "application/json",
        **headers,
    }
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=sent) as response:
        assert response.status == 202, await response.text()
