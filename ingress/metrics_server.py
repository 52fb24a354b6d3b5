"""The ingress's Prometheus endpoint: `GET /metrics` on a port of its own (KANAL_INGRESS_METRICS_PORT).

Not on the ingress port, which is open to every event sender: what Kanal counts (Broker names,
event types, status codes) is for operators, and a scrape is work a sender should not be able to
ask for. Any other path on this port is a 404. A small aiohttp site in the ingress's event loop,
as the dispatcher serves its health and metrics; the exposition is small because every label is
bounded (`ingress.metrics`), so building it does not hold the loop up.
"""

from __future__ import annotations

import logging
from types import TracebackType

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

__all__ = ["MetricsServer"]

log = logging.getLogger(__name__)


class MetricsServer:
    """Serves `registry` on http://host:port/metrics from `start()` until `close()` (idempotent).
    Port 0 takes a free port; `port` says which once started."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.host = host
        self.port = port
        self._registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; raises OSError if the port cannot be had (another process holds it)."""
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runner = runner
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await self.close()
            raise
        self.port = runner.addresses[0][1]
        log.info("ingress metrics on http://%s:%d/metrics", self.host, self.port)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
