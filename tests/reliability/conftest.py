"""Fault tests get a Kafka-protocol broker of their own, so freezing it harms no other test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from channel.embedded import EmbeddedKafka
from support.kafka import KafkaUnderTest


@pytest.fixture
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedKafka, KafkaUnderTest]]:
    broker = EmbeddedKafka(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    try:
        yield (
            broker,
            KafkaUnderTest(
                broker.bootstrap_servers, idempotence=False, fetch_max_wait_ms=20, session_timeout_ms=4000
            ),
        )
    finally:
        broker.stop()
