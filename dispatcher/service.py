"""The dispatcher service: follows the resource log and reads each topic once for all its Triggers.

Every Ready Trigger (and Subscription) becomes a lane of its topic's `TopicConsumer`. Changes
arrive through the resource log and are applied within one fetch: a new Trigger gets a lane
(and is caught up from its creation time), a deleted one (or one whose Broker went away) has its
lane drained, bounded, and retired, and a changed filter, subscriber or delivery is swapped into
its lane. No Kafka consumer is created per Trigger. A topic consumer that fails (Kafka
unreachable) is restarted after a pause. Health and metrics are served on KANAL_DISPATCHER_PORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiokafka.client import AIOKafkaClient
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from channel.control.log import ResourceLog
from channel.destinations import DestinationPolicy
from channel.kafka import client_options, create_producer
from channel.producer import KafkaEventSink
from channel.proxy import Proxies
from channel.settings import Settings
from dispatcher.attempts import AttemptStore
from dispatcher.consumer import TopicConsumer
from dispatcher.delivery import MAX_RESPONSE_BYTES, HttpPoster
from dispatcher.dispatch import Dispatcher
from dispatcher.groups import GroupOffsets
from dispatcher.http import HttpClient
from dispatcher.plan import Plan, plans_from_documents
from dispatcher.stats import StatsPublisher

if TYPE_CHECKING:
    from channel.tracing import Tracing

__all__ = ["DispatcherService"]

log = logging.getLogger(__name__)


class DispatcherService:
    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self._tracing = tracing  # None: tracing off
        # HTTP_PROXY, HTTPS_PROXY and NO_PROXY, as other HTTP clients read them (a bad one raises).
        self._proxies = Proxies.from_environment(os.environ)
        # KANAL_DELIVERY_DENY and Kanal's own ports: checked on every connection a delivery opens.
        self._policy = DestinationPolicy.from_settings(settings)
        self._log = ResourceLog(settings, self._on_resources)
        self._plans: dict[str, Plan] = {}
        self._changed = asyncio.Event()
        self._running: dict[str, tuple[TopicConsumer, asyncio.Task[None]]] = {}
        self._stop = asyncio.Event()

    def _on_resources(self, documents: Mapping[str, dict[str, Any]], changed: frozenset[str]) -> None:
        self._plans = plans_from_documents(
            documents,
            topic_prefix=self.settings.kafka_topic_prefix,
            default_timeout=self.settings.dispatcher_default_timeout,
            channel_topic_prefix=self.settings.kafka_channel_topic_prefix,
        )
        self._changed.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._changed.set()

    async def run(self) -> None:
        # Whatever was started is closed, in reverse order, however far the start got.
        async with contextlib.AsyncExitStack() as stack:
            client = HttpClient(
                per_host=self.settings.dispatcher_connections_per_host,
                max_response=MAX_RESPONSE_BYTES,
                proxies=self._proxies,
                policy=self._policy,
            )
            stack.push_async_callback(client.close)
            if self._proxies is not None:
                log.info("deliveries go through %s", self._proxies.describe())
            settings = self.settings
            sink = KafkaEventSink(
                create_producer(settings),
                settings.kafka_produce_timeout,
                renew=lambda: create_producer(settings),
            )
            stack.push_async_callback(_close_quietly, sink)
            await sink.producer.start()
            stack.push_async_callback(self._log.close)
            await self._log.start()
            runner = web.AppRunner(self._health_app(), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, self.settings.host, self.settings.dispatcher_port)
            await site.start()
            log.info(
                "dispatcher health and metrics on http://%s:%d",
                self.settings.host,
                self.settings.dispatcher_port,
            )
            attempts = AttemptStore(self.settings)
            stack.push_async_callback(attempts.close)
            await attempts.start()
            kafka = AIOKafkaClient(**client_options(self.settings))
            stack.push_async_callback(kafka.close)
            await kafka.bootstrap()
            groups = GroupOffsets(kafka)
            tracer = None
            if self._tracing is not None:
                from dispatcher.tracing import DispatchTracer

                tracer = DispatchTracer(self._tracing)
            dispatcher = Dispatcher(
                HttpPoster(client),
                sink,
                max_hops=self.settings.dispatcher_max_hops,
                attempts=attempts,
                tracer=tracer,
            )
            async with asyncio.TaskGroup() as tg:
                follower = tg.create_task(self._log.run())
                attempts_follower = tg.create_task(attempts.log.run())
                # Delivery statistics for `kanal describe`; written once more when stopping.
                stats = tg.create_task(StatsPublisher(settings, sink).run(self._stop))
                while not self._stop.is_set():
                    await self._changed.wait()
                    self._changed.clear()
                    if not self._stop.is_set():
                        self._reconcile(tg, dispatcher, groups)
                for consumer, _ in self._running.values():
                    consumer.stop()
                await asyncio.gather(*(t for _, t in self._running.values()), return_exceptions=True)
                await stats
                follower.cancel()
                attempts_follower.cancel()

    def _reconcile(self, tg: asyncio.TaskGroup, dispatcher: Dispatcher, groups: GroupOffsets) -> None:
        by_topic: dict[str, dict[str, Plan]] = {}
        for key, plan in self._plans.items():
            by_topic.setdefault(plan.topic, {})[key] = plan
        for topic in list(self._running):
            consumer, task = self._running[topic]
            if topic not in by_topic or task.done():
                consumer.stop()
                del self._running[topic]
        for topic, plans in by_topic.items():
            running = self._running.get(topic)
            if running is None:
                consumer = TopicConsumer(topic, self.settings, dispatcher, groups)
                running = self._running[topic] = (consumer, tg.create_task(self._supervise(consumer)))
            running[0].set_plans(plans)

    async def _supervise(self, consumer: TopicConsumer) -> None:
        """Run a topic consumer; if it fails, ask for a fresh one after a pause."""
        try:
            await consumer.run()
        except Exception as exc:
            log.warning("consumer of %s failed: %s; restarting", consumer.topic, exc)
            await asyncio.sleep(1.0)
            self._changed.set()

    def _health_app(self) -> web.Application:
        async def healthz(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def readyz(request: web.Request) -> web.Response:
            if self._log.healthy():
                return web.Response(text="ok")
            return web.Response(status=503, text="not ready: Kafka unreachable or resource log not loaded")

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        return app


async def _close_quietly(sink: KafkaEventSink) -> None:
    with contextlib.suppress(Exception):
        await sink.close()
