"""The ingress's metrics port on a real socket: /metrics answers the exposition, any other path 404,
a port already taken stops the start with OSError, and close is idempotent."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from ingress.metrics_server import MetricsServer


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("kanal_test_things", "Things", registry=registry).inc(3)
    return registry


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/metrics", 200, id="metrics"),
        pytest.param("GET", "/", 404, id="root"),
        pytest.param("GET", "/ns/default", 404, id="a-broker-path"),
        pytest.param("POST", "/ns/default", 404, id="an-event"),
        pytest.param("POST", "/metrics", 405, id="post-metrics"),
    ],
)
async def test_only_metrics_is_served(
    registry: CollectorRegistry, method: str, path: str, status: int
) -> None:
    async with MetricsServer("127.0.0.1", 0, registry) as server, aiohttp.ClientSession() as session:
        assert server.port != 0
        async with session.request(method, f"http://127.0.0.1:{server.port}{path}", data=b"{}") as response:
            assert response.status == status
            body = await response.read()
    if status == 200:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        assert b"kanal_test_things_total 3.0" in body


async def test_a_taken_port_fails_the_start_and_close_is_idempotent(registry: CollectorRegistry) -> None:
    async with MetricsServer("127.0.0.1", 0, registry) as first:
        second = MetricsServer("127.0.0.1", first.port, registry)
        with pytest.raises(OSError, match="in use"):
            await second.start()
        await second.close()
    await first.close()  # again, after the context closed it
