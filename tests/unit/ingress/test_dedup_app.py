"""The ingress app with duplicate-free ingestion: a Broker whose route declares a window answers
its duplicates 202 without a write and counts them; one without stores every copy."""

from __future__ import annotations

import asyncio
import json

from test_app import BINARY, call

from channel.settings import Settings
from ingress.app import IngressApp
from ingress.dedup import Deduplicator
from ingress.dedup_index import DUPLICATES, IdIndex, Owner
from ingress.routing import Route
from support.memory_sink import MemoryEventSink


class _Follower:
    """Rounds answered on the next loop turn, as a caught-up follower with nothing to read."""

    fresh_until = float("-inf")

    def synced(self, arrived: float) -> asyncio.Future[None] | None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, None)
        return future


def _app(sink: MemoryEventSink) -> IngressApp:
    app = IngressApp(Settings(), sink, ready=lambda: True)
    index = IdIndex(100)
    index.set_windows({"t.dedup": (Owner("broker", "ns", "dedup"), 600.0)})
    app.dedup = Deduplicator(index, _Follower(), sink, timeout=5.0)
    app.routes = {
        ("broker", "ns", "dedup"): Route("broker", "ns", "dedup", "t.dedup", 600.0),
        ("broker", "ns", "plain"): Route("broker", "ns", "plain", "t.plain"),
    }
    return app


async def test_duplicates_are_answered_202_and_not_stored() -> None:
    sink = MemoryEventSink()
    app = _app(sink)
    before = DUPLICATES.labels("broker", "ns", "dedup")._value.get()
    for path in ("/ns/dedup", "/ns/dedup", "/ns/plain", "/ns/plain"):
        status, _, _ = await call(app, "POST", path, BINARY, b"{}")
        assert status == 202
    batch = [
        {"specversion": "1.0", "id": i, "source": "src", "type": "greeting"} for i in ("1", "2", "2", "3")
    ]
    headers = [(b"content-type", b"application/cloudevents-batch+json")]
    status, _, _ = await call(app, "POST", "/ns/dedup", headers, json.dumps(batch).encode())
    assert status == 202
    stored = [dict(r.headers)["ce_id"] for r in sink.topics["t.dedup"]]
    assert stored == [b"1", b"2", b"3"]
    assert len(sink.topics["t.plain"]) == 2
    assert DUPLICATES.labels("broker", "ns", "dedup")._value.get() == before + 3
