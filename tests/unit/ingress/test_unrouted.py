"""IngressApp.unrouted: what the server asks before it reads a body, and the one shared refresh of
the routes behind it (at most one running and one waiting to run, and a bounded number of
requests waiting on them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from channel.settings import Settings
from ingress.app import IngressApp, Request, Response
from ingress.routing import Route
from support.memory_sink import MemoryEventSink

KNOWN = Route("broker", "ns", "known", "topic")


def _app(refresh: Callable[[], Awaitable[None]] | None) -> IngressApp:
    app = IngressApp(Settings(), MemoryEventSink(), ready=lambda: True, refresh=refresh)
    app.routes = {("broker", "ns", "known"): KNOWN}
    return app


def _post(path: str) -> Request:
    return Request("POST", path, [(b"host", b"x")])


@pytest.mark.parametrize(
    ("path", "with_refresh", "expected"),
    [
        ("/ns/known", True, None),
        ("/healthz", True, None),
        ("/ns/unknown", False, 404),
        ("/ns/unknown", True, "later"),
    ],
    ids=["known-broker", "admin-path", "unknown-without-refresh", "unknown-after-refresh"],
)
async def test_what_the_server_is_told_before_the_body(
    path: str, with_refresh: bool, expected: object
) -> None:
    async def refresh() -> None:
        pass

    decision = _app(refresh if with_refresh else None).unrouted(_post(path))
    if expected is None:
        assert decision is None
    elif expected == "later":
        assert isinstance(decision, asyncio.Future)
        answer = await decision
        assert isinstance(answer, Response) and answer.status == 404
    else:
        assert isinstance(decision, Response) and decision.status == expected


async def test_a_flood_shares_the_refresh_and_only_so_many_wait() -> None:
    calls = 0
    gate = asyncio.Event()

    async def refresh() -> None:
        nonlocal calls
        calls += 1
        await gate.wait()

    app = _app(refresh)
    decisions = [app.unrouted(_post(f"/ns/u{i}")) for i in range(200)]
    waiting = [d for d in decisions if isinstance(d, asyncio.Future)]
    at_once = [d for d in decisions if isinstance(d, Response)]
    assert len(waiting) == 64 and len(at_once) == 136
    assert {d.status for d in at_once} == {404}
    await asyncio.sleep(0)
    assert calls == 1  # the first started one; those after it wait for the next
    gate.set()
    answers = await asyncio.gather(*waiting)
    assert all(isinstance(a, Response) and a.status == 404 for a in answers)
    assert calls == 2  # one more, for the requests that came while the first ran
    # The bound is free again.
    assert isinstance(app.unrouted(_post("/ns/again")), asyncio.Future)


async def test_a_broker_found_by_the_refresh_is_read_on() -> None:
    apps: list[IngressApp] = []

    async def refresh() -> None:
        apps[0].routes = {("broker", "ns", "new"): Route("broker", "ns", "new", "t2")}

    apps.append(_app(refresh))
    decision = apps[0].unrouted(_post("/ns/new"))
    assert isinstance(decision, asyncio.Future)
    assert await decision is None


async def test_a_refresh_cut_short_by_shutdown_is_a_503() -> None:
    async def refresh() -> None:
        await asyncio.Event().wait()

    app = _app(refresh)
    decision = app.unrouted(_post("/ns/unknown"))
    assert isinstance(decision, asyncio.Future)
    await asyncio.sleep(0)
    for task in asyncio.all_tasks():
        if task.get_coro().__qualname__.endswith("refresh"):
            task.cancel()
    answer = await decision
    assert isinstance(answer, Response) and answer.status == 503
