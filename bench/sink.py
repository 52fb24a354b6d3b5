"""A fast counting sink for the benchmarks, in a process of its own.

A bare ASGI app on uvicorn+httptools (the ingress's HTTP stack) that answers every POST with 202
and counts it. When a request carries the `ce-benchsent` header (wall-clock seconds, set by
bench/loadgen.py just before sending to the ingress), the sink records receipt minus that time:
the end-to-end latency. `GET /stats` returns the counters as JSON; `DELETE /stats` resets them.

    python bench/sink.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgi_server import AsgiServer  # bench/, this script's folder

Message = MutableMapping[str, Any]
SENT_HEADER = b"ce-benchsent"


class Counter:
    """What the sink has received since the last reset."""

    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []
        self.types: set[bytes] = set()

    def stats(self) -> dict[str, object]:
        ordered = sorted(self.latencies)

        def pick(q: float) -> float:
            if not ordered:
                return float("nan")
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

        return {
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "distinct_types": len(self.types),
            "stamped": len(ordered),
            "p50_ms": pick(0.50),
            "p90_ms": pick(0.90),
            "p99_ms": pick(0.99),
            "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
        }


counter = Counter()


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    global counter
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    now = time.time()
    body = b""
    status = 202
    if scope["method"] == "POST":
        if counter.count == 0:
            counter.first = now
        counter.count += 1
        counter.last = now
        for name, value in scope["headers"]:
            if name == SENT_HEADER:
                counter.latencies.append(now - float(value))
            elif name == b"ce-type":
                counter.types.add(value)
    elif scope["path"] == "/stats" and scope["method"] == "GET":
        body, status = json.dumps(counter.stats()).encode(), 200
    elif scope["path"] == "/stats" and scope["method"] == "DELETE":
        counter = Counter()
        status = 204
    elif scope["path"] == "/healthz":
        status = 200
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    server = AsgiServer(app, "127.0.0.1", int(sys.argv[1]))
    try:
        import uvloop

        uvloop.run(server.serve())
    except ImportError:
        asyncio.run(server.serve())
