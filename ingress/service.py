"""The ingress service: resource log follower + Kafka producer + HTTP server (and a metrics port),
with a graceful stop.

`run()` serves until `shutdown()`: then the server stops accepting, in-flight requests finish
(each answered only after Kafka acknowledged), and the producer is flushed and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError

from channel.control.log import ResourceLog
from channel.kafka import create_producer
from channel.producer import EventSink, KafkaEventSink
from channel.settings import Settings
from ingress.app import IngressApp
from ingress.auth import authenticator_from_settings
from ingress.dedup import Deduplicator
from ingress.dedup_follower import TopicFollower
from ingress.dedup_index import IdIndex, Owner
from ingress.eventtype_log import EventTypePublisher, default_replica
from ingress.eventtypes import EventTypeRecorder
from ingress.http import HttpServer
from ingress.metrics_server import MetricsServer
from ingress.routing import routes_from_documents

if TYPE_CHECKING:
    from channel.tracing import Tracing

__all__ = ["IngressService", "create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, sink: EventSink, ready: Any = None) -> IngressApp:
    """The app alone (an ASGI callable too), for tests and embedding: routes are set by the caller."""
    return IngressApp(settings, sink, ready=ready or (lambda: True))


class IngressService:
    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self._log = ResourceLog(settings, self._on_resources)
        sink = self._sink = KafkaEventSink(
            create_producer(settings),
            settings.kafka_produce_timeout,
            renew=lambda: create_producer(settings),
        )
        self.app = IngressApp(
            settings,
            sink,
            # Not ready while Kafka is unreachable: the resource log cannot fetch, or the last
            # write failed (until a write succeeds or `_recover` reaches Kafka again).
            ready=lambda: self._log.healthy() and sink.healthy(),
            refresh=self._log.caught_up,
            auth=authenticator_from_settings(settings),
        )
        self._server = HttpServer(
            self.app,
            settings.host,
            settings.ingress_port,
            head_timeout=settings.ingress_head_timeout,
            body_timeout=settings.ingress_body_timeout,
            max_connections=settings.ingress_max_connections,
            certfile=settings.ingress_tls_certfile,
            keyfile=settings.ingress_tls_keyfile,
        )
        # Event discovery (ingress.eventtypes): counted on the hot path, written every few seconds.
        self._event_types = None
        if settings.ingress_event_types_max > 0:
            recorder = EventTypeRecorder(settings.ingress_event_types_max, default_replica(settings))
            self.app.event_types = recorder
            self._event_types = EventTypePublisher(
                settings, sink, recorder, resources_caught_up=self._log.caught_up
            )
        if tracing is not None:
            from ingress.tracing import IngressTracer

            self.app.tracer = IngressTracer(tracing)
        # Duplicate-free ingestion (ingress.dedup), for the Brokers and Channels that declare it.
        index = IdIndex(settings.ingress_deduplication_max_ids)
        self._dedup = TopicFollower(
            settings,
            index,
            timeout=settings.kafka_produce_timeout,
            max_staleness=settings.ingress_deduplication_max_staleness,
        )
        self.app.dedup = Deduplicator(index, self._dedup, sink, timeout=settings.kafka_produce_timeout)
        sink.written = self._dedup.written
        # Prometheus scrapes a port of its own, never the one event senders reach.
        self._metrics = MetricsServer(settings.host, settings.ingress_metrics_port)
        self._stopping = asyncio.Event()

    def _on_resources(self, documents: Mapping[str, dict[str, Any]], changed: frozenset[str]) -> None:
        self.app.routes = routes_from_documents(
            documents, self.settings.kafka_topic_prefix, self.settings.kafka_channel_topic_prefix
        )
        if self._event_types is not None:
            self._event_types.resources_changed(self.app.routes.values(), documents, changed)
        self._dedup.set_windows(
            {
                route.topic: (Owner(route.kind, route.namespace, route.name), route.deduplication_window)
                for route in self.app.routes.values()
                if route.deduplication_window is not None
            }
        )

    async def run(self) -> None:
        try:
            await self._sink.producer.start()
            await self._log.start()
            await self._metrics.start()
            async with asyncio.TaskGroup() as tg:
                follower = tg.create_task(self._log.run())
                loaded = tg.create_task(self._log.loaded.wait())
                stopping = tg.create_task(self._stopping.wait())
                await asyncio.wait([loaded, stopping], return_when=asyncio.FIRST_COMPLETED)
                loaded.cancel()
                stopping.cancel()
                if self._stopping.is_set():
                    follower.cancel()
                    return
                log.info(
                    "ingress listening on http://%s:%d",
                    self.settings.host,
                    self.settings.ingress_port,
                )
                recover = tg.create_task(self._recover())
                dedup = tg.create_task(self._dedup.run())
                served = asyncio.Event()  # the event types' last write follows the last answer
                if self._event_types is not None:
                    tg.create_task(self._event_types.run(served))
                await self._server.serve()
                served.set()
                follower.cancel()
                recover.cancel()
                dedup.cancel()
        finally:
            with contextlib.suppress(Exception):
                await self._sink.producer.flush()
            await self._sink.close()
            await self._log.close()
            await self._metrics.close()

    async def _recover(self, interval: float = 1.0, quiet: float = 60.0) -> None:
        """While writes fail, ask Kafka for metadata; when it answers, report ready again, so an
        ingress taken out of its Service by readiness gets traffic back without a restart.

        Kafka can answer metadata while writes still fail (too few in-sync replicas, a topic's
        leader missing): then this goes round once a second, so it says so once, and again only
        after `quiet` seconds, not at every turn."""
        said = float("-inf")
        while True:
            await asyncio.sleep(interval)
            if not self._sink.failing:
                continue
            try:
                async with asyncio.timeout(self.settings.kafka_produce_timeout):
                    reachable = await self._sink.producer.client.force_metadata_update()
            except (TimeoutError, KafkaError):
                reachable = False
            if reachable:
                now = time.monotonic()
                if now - said >= quiet:
                    log.info(
                        "Kafka is reachable again: taking events (if writes keep failing, this is said "
                        "again at most every %g s)",
                        quiet,
                    )
                    said = now
                self._sink.failing = False

    def shutdown(self) -> None:
        self._stopping.set()
        self._server.shutdown()
