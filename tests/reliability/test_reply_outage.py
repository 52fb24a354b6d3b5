"""A Trigger's reply that Kafka cannot store fails the whole delivery, which is retried (RPL-06).

The subscriber freezes the broker (SIGSTOP, on a broker of this test's own) just before it
answers the first delivery with a reply event, so the dispatcher cannot store the reply within
its produce timeout. The subscriber must then see the original event again, and the broker,
resumed at that second delivery, takes the reply, which reaches the Trigger that selects it.
"""

from __future__ import annotations

import os
import signal

import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_event
from support.kafka import KafkaUnderTest, OwnBroker
from support.report import summary
from support.sinks import Received, RecordingSink, reply_event

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

PRODUCE_TIMEOUT = 2.0


async def test_a_reply_kafka_cannot_store_redelivers_the_original_event(
    own_cluster: KanalCluster, own_kafka: tuple[OwnBroker, KafkaUnderTest]
) -> None:
    broker, _ = own_kafka
    pid = broker.pid
    assert pid is not None
    frozen = False

    def oracle(n: int, received: Received) -> web.Response:
        nonlocal frozen
        if received.header("ce-type") == "question":
            if n == 1:  # the reply to this answer will find Kafka frozen
                os.kill(pid, signal.SIGSTOP)
                frozen = True
            elif frozen:
                os.kill(pid, signal.SIGCONT)
                frozen = False
        return reply_event("answer-1", "answer", b'{"answer": 42}', source="oracle")

    subscriber = await RecordingSink(oracle).start()
    answers = await RecordingSink().start()
    try:
        await own_cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: replies}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: ask, namespace: replies}}
spec:
  broker: default
  filter: {{attributes: {{type: question}}}}
  subscriber: {{uri: "{subscriber.url}"}}
  delivery: {{retry: 3, backoffPolicy: linear, backoffDelay: PT0.5S}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: answers, namespace: replies}}
spec:
  broker: default
  filter: {{attributes: {{type: answer}}}}
  subscriber: {{uri: "{answers.url}"}}
""")
        await post_event(own_cluster.broker_url("replies", "default"), "question-1", "question", "asker")

        await subscriber.wait_for(2, timeout=60)
        assert subscriber.ids()[:2] == ["question-1", "question-1"]
        [answer, *_] = await answers.wait_for(1, timeout=60)
        assert answer.header("ce-id") == "answer-1"
        assert answer.body == b'{"answer": 42}'
        # The first reply, written late once Kafka resumed, may be stored too (at-least-once).
        summary(
            "reply-outage",
            faults="Kafka frozen (SIGSTOP) as the subscriber replied, resumed at its next delivery",
            sent=1,
            deliveries_of_the_event=len(subscriber.requests),
            replies_delivered=len(answers.requests),
            lost=0 if answers.requests else 1,
        )
        assert len(subscriber.requests) <= 1 + 3, "more attempts than the Trigger's retry allows"
        assert set(answers.ids()) == {"answer-1"}
        with open(own_cluster.log_path("dispatcher")) as log:
            assert "cannot store reply id=answer-1" in log.read()
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        await subscriber.close()
        await answers.close()
