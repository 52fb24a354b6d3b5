"""Topic and consumer-group names: deterministic, collision-free across namespaces, bounded."""

from __future__ import annotations

from channel.kafka import MAX_TOPIC_LENGTH, broker_topic, trigger_group


def test_broker_topic_is_deterministic() -> None:
    assert broker_topic("event-example", "default") == "knative-broker.event-example.default"
    assert broker_topic("event-example", "default") == broker_topic("event-example", "default")


def test_namespaces_cannot_collide() -> None:
    # With '-' as separator, a-b/c and a/b-c would share a topic; namespaces have no dots.
    assert broker_topic("a-b", "c") != broker_topic("a", "b-c")


def test_long_names_are_bounded_and_distinct() -> None:
    long_a, long_b = "a" * 253, "a" * 252 + "b"
    topic_a, topic_b = broker_topic("ns", long_a), broker_topic("ns", long_b)
    assert len(topic_a) <= MAX_TOPIC_LENGTH and len(topic_b) <= MAX_TOPIC_LENGTH
    assert topic_a != topic_b


def test_recreated_trigger_gets_a_new_group() -> None:
    assert trigger_group("ns", "t", "1111aaaa-x") != trigger_group("ns", "t", "2222bbbb-x")
    assert trigger_group("ns", "t", "1111aaaa-x") == "kanal.trigger.ns.t.1111aaaa"
