"""Fixtures of the HTTP server suites (HTTP/1.1 and HTTP/2): the ingress's own server on
loopback, with the real IngressApp and an in-memory sink."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_http_server import _serve

from ingress.http import HttpServer
from support.memory_sink import MemoryEventSink


@pytest.fixture
async def memory() -> MemoryEventSink:
    return MemoryEventSink()


@pytest.fixture
async def server(memory: MemoryEventSink) -> AsyncIterator[HttpServer]:
    server, task = await _serve(memory)
    yield server
    server.shutdown()
    await task
