"""`kanal describe` text, from a resource, its statistics and its lag (no controller, no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from channel.kafka import PartitionLag
from channel.settings import Settings
from dispatcher.stats import LastError, Statistics
from kanal.cli.describe import describe_text, lag_column

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
MS = int(NOW.timestamp() * 1000)
SETTINGS = Settings()

TRIGGER: dict[str, Any] = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Trigger",
    "metadata": {
        "name": "hello",
        "namespace": "shop",
        "uid": "0123456789abcdef",
        "creationTimestamp": "2026-12-07T11:55:00Z",
    },
    "spec": {"broker": "default", "subscriber": {"uri": "http://sink/"}},
    "status": {
        "subscriberUri": "http://sink/",
        "deadLetterSinkUri": "http://dead/",
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "SubscriberResolved", "status": "True", "reason": "Resolved", "message": "ok"},
        ],
    },
}


def test_a_trigger_in_detail() -> None:
    stats = {
        "trigger/shop/hello": Statistics(
            delivered=7,
            retried=4,
            dead_lettered=2,
            dropped=1,
            filtered=3,
            replicas=2,
            since_ms=MS - 60_000,
            updated_ms=MS,
            last_error=LastError("500", MS - 30_000),
        )
    }
    lags = {"trigger/shop/hello": [PartitionLag(0, 10, 12), PartitionLag(1, None, 3)]}
    text = describe_text(TRIGGER, stats=stats, lags=lags, settings=SETTINGS, now=NOW)
    lines = text.splitlines()
    assert "Name:         hello" in lines and "Broker:       default" in lines
    assert "Subscriber:   http://sink/" in lines and "Dead letter:  http://dead/" in lines
    assert "Topic:        knative-broker.shop.default" in lines
    assert "Group:        kanal.trigger.shop.hello.01234567" in lines
    assert "  SubscriberResolved   True     Resolved   ok" in lines
    assert "Delivery statistics (2 dispatchers, since 2026-12-07T11:59:00Z (60s ago)):" in lines
    for line in ("  Delivered:      7", "  Retried:        4", "  Dead-lettered:  2", "  Dropped:        1"):
        assert line in lines
    assert "  Last error:     500 at 2026-12-07T11:59:30Z (30s ago)" in lines
    assert "  PARTITION   COMMITTED   END   LAG" in lines
    assert "  0           10          12    2" in lines and "  1           -           3     -" in lines
    assert "  Total: 2" in lines


def test_unknown_statistics_and_lag_say_why() -> None:
    text = describe_text(
        TRIGGER,
        stats="unknown: KANAL_KAFKA_BOOTSTRAP_SERVERS is not set",
        lags={"trigger/shop/hello": "unknown: Kafka did not answer"},
        settings=SETTINGS,
        now=NOW,
    )
    assert "  unknown: KANAL_KAFKA_BOOTSTRAP_SERVERS is not set" in text.splitlines()
    assert "  unknown: Kafka did not answer" in text.splitlines()


def test_the_dead_letter_sink_falls_back_to_the_brokers_and_then_the_topic() -> None:
    trigger = {**TRIGGER, "status": {"conditions": []}}
    broker = {"status": {"deadLetterSinkUri": "http://broker-dead/"}}
    assert "Dead letter:  http://broker-dead/" in describe_text(
        trigger, stats={}, lags={}, settings=SETTINGS, parent=broker, now=NOW
    )
    annotated = {
        **trigger,
        "metadata": {**TRIGGER["metadata"], "annotations": {"kanal.dev/dead-letter-topic": "shop.dead"}},
    }
    text = describe_text(annotated, stats={}, lags={}, settings=SETTINGS, now=NOW)
    assert "Dead letter:  Kafka topic shop.dead" in text
    assert "  none yet (no dispatcher has handled an event of it)" in text


def test_a_broker_lists_its_triggers() -> None:
    broker = {
        "kind": "Broker",
        "metadata": {"name": "default", "namespace": "shop"},
        "spec": {},
        "status": {"address": {"url": "http://ingress/shop/default"}, "conditions": []},
    }
    stats = {"trigger/shop/hello": Statistics(delivered=5, replicas=1, since_ms=MS, updated_ms=MS)}
    lags = {"trigger/shop/hello": [PartitionLag(0, 5, 5)]}
    text = describe_text(broker, stats=stats, lags=lags, settings=SETTINGS, children=[TRIGGER], now=NOW)
    lines = text.splitlines()
    assert "Address:      http://ingress/shop/default" in lines
    assert "  NAME    READY   DELIVERED   RETRIED   DEAD-LETTERED   DROPPED   LAG" in lines
    assert "  hello   True    5           0         0               0         0" in lines


def test_lag_column() -> None:
    assert lag_column([PartitionLag(0, 1, 4), PartitionLag(1, 2, 2)]) == "3"
    assert lag_column([PartitionLag(0, None, 4)]) == "-"
    assert lag_column("unknown: no") == "?"
    assert lag_column(None) == "?"
