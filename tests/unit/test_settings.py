"""Settings read from the environment, and the values derived from them."""

from __future__ import annotations

import pytest

from channel.kafka import create_producer, max_record_bytes
from channel.settings import Settings


def test_event_reads_use_the_general_fetch_wait_unless_set_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANAL_KAFKA_FETCH_MAX_WAIT_MS", "20")
    assert Settings().event_fetch_max_wait_ms() == 20
    monkeypatch.setenv("KANAL_KAFKA_EVENT_FETCH_MAX_WAIT_MS", "10")
    settings = Settings()
    assert settings.event_fetch_max_wait_ms() == 10
    assert settings.kafka_fetch_max_wait_ms == 20  # the other reads keep theirs


def test_an_event_fetch_wait_below_one_millisecond_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANAL_KAFKA_EVENT_FETCH_MAX_WAIT_MS", "0")
    with pytest.raises(ValueError, match="kafka_event_fetch_max_wait_ms"):
        Settings()


MIB = 1024 * 1024


@pytest.mark.parametrize(("body_limit", "record_limit"), [(MIB, 2 * MIB), (2000, MIB)])
async def test_producer_and_topics_take_twice_the_body_limit(body_limit: int, record_limit: int) -> None:
    """An event at the body limit, with its attributes as record headers, fits what the producer
    sends and what Kanal's topics take (at least Kafka's own default, 1 MiB)."""
    settings = Settings(ingress_max_body_bytes=body_limit, kafka_bootstrap_servers="127.0.0.1:9")
    assert max_record_bytes(settings) == record_limit
    assert create_producer(settings)._max_request_size == record_limit
