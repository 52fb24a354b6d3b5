"""Which delivery spec applies and what it does, with real processes and real sinks: a Trigger's
or Subscription's own `delivery` replaces its Broker's or Channel's whole (DLV-15, SUB-09); a
failing dead-letter sink is retried (DLV-20); Subscriptions get retries, dead letters and
`Prefer: reply` (SUB-12, SUB-13); a failing reply destination fails the whole delivery, retried
only when retrying can help (RPL-11); the same subscriber twice gets the event twice (FLT-02,
SUB-02); a 60,000-byte CloudEvents 0.3 event arrives byte for byte and still 0.3 (ING-14,
ING-09)."""

from __future__ import annotations

import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_event
from support.sinks import Received, RecordingSink, reply_event

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

FAST = "backoffDelay: PT0.05S"


def _status(status: int):
    return lambda n, r: web.Response(status=status)


def _replying(n: int, request: Received) -> web.Response:
    return reply_event(f"reply-{request.header('ce-id')}", "reply.type")


async def _post(url: str, event_id: str, event_type: str, body: bytes = b"{}", **headers: str) -> None:
    await post_event(url, event_id, event_type, "delivery-specs", body, **headers)


async def test_a_triggers_own_delivery_replaces_the_brokers_whole(cluster: KanalCluster) -> None:
    own_subscriber = await RecordingSink(_status(500)).start()
    inheriting_subscriber = await RecordingSink(_status(500)).start()
    # The Broker's dead-letter sink fails twice with a retryable status, then takes the event.
    brokers_dls = await RecordingSink(lambda n, r: web.Response(status=503 if n <= 2 else 202)).start()
    triggers_dls = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: ds}}
spec:
  delivery: {{retry: 3, {FAST}, deadLetterSink: {{uri: "{brokers_dls.url}"}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: own, namespace: ds}}
spec:
  broker: default
  filter: {{attributes: {{type: own}}}}
  subscriber: {{uri: "{own_subscriber.url}"}}
  delivery: {{deadLetterSink: {{uri: "{triggers_dls.url}"}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: inherits, namespace: ds}}
spec:
  broker: default
  filter: {{attributes: {{type: inherits}}}}
  subscriber: {{uri: "{inheriting_subscriber.url}"}}
""")
        await _post(cluster.broker_url("ds", "default"), "e-own", "own")
        [dead] = await triggers_dls.wait_for(1)
        assert dead.header("ce-id") == "e-own"
        # No retry: the Trigger's delivery says none, and the Broker's `retry: 3` is not merged in.
        assert len(own_subscriber.requests) == 1

        await _post(cluster.broker_url("ds", "default"), "e-inherits", "inherits")
        await brokers_dls.wait_for(3)
        assert len(inheriting_subscriber.requests) == 4  # the Broker's retry: 3
        assert brokers_dls.ids() == ["e-inherits"] * 3  # 503, 503, then taken; never e-own
        assert brokers_dls.requests[0].header("ce-knativeerrorcode") == "500"
    finally:
        for sink in (own_subscriber, inheriting_subscriber, brokers_dls, triggers_dls):
            await sink.close()


async def test_channel_delivery_defaults_overrides_and_failing_replies(cluster: KanalCluster) -> None:
    inheriting = await RecordingSink(_status(503)).start()
    overriding = await RecordingSink(_status(503)).start()
    channels_dls = await RecordingSink().start()
    replier = await RecordingSink(_replying).start()
    unavailable_reply = await RecordingSink(_status(503)).start()
    replies_dls = await RecordingSink().start()
    refusing_replier = await RecordingSink(_replying).start()
    refused_reply = await RecordingSink(_status(400)).start()
    refusals_dls = await RecordingSink().start()
    shared = await RecordingSink().start()
    sinks = (
        inheriting,
        overriding,
        channels_dls,
        replier,
        unavailable_reply,
        replies_dls,
        refusing_replier,
        refused_reply,
        refusals_dls,
        shared,
    )

    def subscription(name: str, subscriber: str, extra: str = "") -> str:
        return (
            f"---\napiVersion: messaging.knative.dev/v1\nkind: Subscription\n"
            f"metadata: {{name: {name}, namespace: cs}}\nspec:\n"
            f"  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: orders}}\n"
            f"  subscriber: {{uri: '{subscriber}'}}\n{extra}"
        )

    try:
        await cluster.apply(
            f"""apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: {{name: orders, namespace: cs}}
spec:
  delivery: {{retry: 2, {FAST}, deadLetterSink: {{uri: "{channels_dls.url}"}}}}
"""
            + subscription("inherits", inheriting.url)
            + subscription("overrides", overriding.url, "  delivery: {retry: 0}\n")
            + subscription(
                "reply-unavailable",
                replier.url,
                f"  reply: {{uri: '{unavailable_reply.url}'}}\n"
                f"  delivery: {{retry: 1, {FAST}, deadLetterSink: {{uri: '{replies_dls.url}'}}}}\n",
            )
            + subscription(
                "reply-refused",
                refusing_replier.url,
                f"  reply: {{uri: '{refused_reply.url}'}}\n"
                f"  delivery: {{retry: 3, {FAST}, deadLetterSink: {{uri: '{refusals_dls.url}'}}}}\n",
            )
            + subscription("same-1", shared.url)
            + subscription("same-2", shared.url)
        )
        await _post(f"{cluster.ingress_url}/channels/cs/orders", "order-1", "order")

        # The Channel's delivery, for the Subscription without its own: 1 + 2 retries, each with
        # Prefer: reply, then its dead-letter sink with the error extensions.
        [dead] = await channels_dls.wait_for(1)
        assert [r.header("prefer") for r in inheriting.requests] == ["reply"] * 3
        assert dead.header("ce-id") == "order-1"
        assert dead.header("ce-knativeerrordest") == inheriting.url
        assert dead.header("ce-knativeerrorcode") == "503"
        # A reply destination answering 503: subscriber then reply, twice (retry: 1), then the
        # original event to the dead-letter sink, naming the reply destination.
        [dead_reply] = await replies_dls.wait_for(1)
        assert len(replier.requests) == 2 and unavailable_reply.ids() == ["reply-order-1"] * 2
        assert dead_reply.header("ce-id") == "order-1"
        assert dead_reply.header("ce-knativeerrordest") == unavailable_reply.url
        # A reply destination answering 400: retrying cannot help, so no retry despite retry: 3.
        [refusal] = await refusals_dls.wait_for(1)
        assert len(refusing_replier.requests) == 1 and len(refused_reply.requests) == 1
        assert refusal.header("ce-id") == "order-1"
        assert refusal.header("ce-knativeerrordest") == refused_reply.url
        assert refusal.header("ce-knativeerrorcode") == "400"
        # Two Subscriptions to one subscriber: two deliveries.
        await shared.wait_for(2)
        assert shared.ids() == ["order-1", "order-1"]
        # The Subscription with its own delivery: no retry, and no dead-letter sink of the
        # Channel's (the Channel's sink got only the other Subscription's dead letter).
        assert len(overriding.requests) == 1
        assert channels_dls.ids() == ["order-1"] and len(channels_dls.requests) == 1
    finally:
        for sink in sinks:
            await sink.close()


async def test_a_large_03_event_reaches_two_triggers_byte_for_byte(cluster: KanalCluster) -> None:
    sink = await RecordingSink().start()
    payload = (bytes(range(256)) * 240)[:60_000]  # not UTF-8, not JSON
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: big}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t1, namespace: big}}
spec: {{broker: default, subscriber: {{uri: "{sink.url}"}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t2, namespace: big}}
spec: {{broker: default, subscriber: {{uri: "{sink.url}"}}}}
""")
        await _post(
            cluster.broker_url("big", "default"),
            "big-1",
            "blob",
            payload,
            **{"ce-specversion": "0.3", "content-type": "application/octet-stream"},
        )
        received = await sink.wait_for(2)
        assert [r.header("ce-id") for r in received] == ["big-1", "big-1"]
        for request in received:
            assert request.body == payload
            assert request.header("ce-specversion") == "0.3"
            assert request.header("content-type") == "application/octet-stream"
    finally:
        await sink.close()


async def test_a_failing_subscription_never_holds_back_another(cluster: KanalCluster) -> None:
    """SUB-03: one Subscription's subscriber answers 503 with retries pending for seconds; the
    other Subscription of the Channel gets every event meanwhile."""
    failing = await RecordingSink(_status(503)).start()
    healthy = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: {{name: busy, namespace: si}}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {{name: failing, namespace: si}}
spec:
  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: busy}}
  subscriber: {{uri: "{failing.url}"}}
  delivery: {{retry: 3, backoffPolicy: linear, backoffDelay: PT10S}}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {{name: healthy, namespace: si}}
spec:
  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: busy}}
  subscriber: {{uri: "{healthy.url}"}}
""")
        url = f"{cluster.ingress_url}/channels/si/busy"
        await _post(url, "first", "order")
        await failing.wait_for(1)  # the first attempt failed: its retries are pending now
        await healthy.wait_for(1)
        for i in range(20):
            await _post(url, f"b{i}", "order")
        await healthy.wait_for(21, timeout=8.0)  # before the failing one's first retry is due
        assert sorted(healthy.ids()) == sorted(["first", *(f"b{i}" for i in range(20))])
    finally:
        await failing.close()
        await healthy.close()
