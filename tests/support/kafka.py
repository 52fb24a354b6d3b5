"""The Kafka the tests run against, and settings pointing at it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from channel.embedded import EmbeddedKafka
from channel.kafka import create_admin
from channel.settings import Settings
from support.apache_kafka import ApacheKafka

# A broker a test starts for itself, to freeze or kill it: `.pid`, `.bootstrap_servers`, `.stop()`.
OwnBroker = EmbeddedKafka | ApacheKafka


@dataclass(frozen=True)
class KafkaUnderTest:
    bootstrap_servers: str
    idempotence: bool
    # The embedded broker answers a fetch only when the wait expires (Kafka: when records arrive).
    fetch_max_wait_ms: int = 500
    # The embedded broker holds a group's first join for half the session timeout.
    session_timeout_ms: int = 10_000
    backend: str = "external"

    def env(self) -> dict[str, str]:
        return {
            "KANAL_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KANAL_KAFKA_IDEMPOTENCE": "true" if self.idempotence else "false",
            "KANAL_KAFKA_FETCH_MAX_WAIT_MS": str(self.fetch_max_wait_ms),
            "KANAL_KAFKA_SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
        }

    def settings(self, **overrides: object) -> Settings:
        """Settings with a resources topic of their own, so tests never see each other's resources."""
        values: dict[str, object] = {
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "kafka_idempotence": self.idempotence,
            "kafka_fetch_max_wait_ms": self.fetch_max_wait_ms,
            "kafka_session_timeout_ms": self.session_timeout_ms,
            "kafka_resources_topic": f"kanal.resources.{uuid.uuid4().hex[:10]}",
            "kafka_topic_prefix": f"t{uuid.uuid4().hex[:8]}",
            "kafka_topic_partitions": 3,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    async def describe_topic(self, topic: str, timeout: float = 10.0) -> tuple[int, dict[str, str]]:
        """A topic's partition count and configs as the broker describes them, once it exists."""
        admin = create_admin(self.settings())
        await admin.start()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    [metadata] = await admin.describe_topics([topic])
                    if metadata.get("partitions"):
                        break
                    await asyncio.sleep(0.1)
            [described] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        finally:
            await admin.close()
        return len(metadata["partitions"]), {entry[0]: entry[1] for entry in described.resources[0][4]}


def embedded_under_test(bootstrap_servers: str) -> KafkaUnderTest:
    """The embedded broker with what its quirks cost: no InitProducerId (idempotence off), a fetch
    answered only when its wait expires (20 ms waits), a group's first join held for half the
    session timeout (4 s)."""
    return KafkaUnderTest(
        bootstrap_servers,
        idempotence=False,
        fetch_max_wait_ms=20,
        session_timeout_ms=4000,
        backend="embedded",
    )


def apache_under_test(bootstrap_servers: str) -> KafkaUnderTest:
    """Apache Kafka with Kanal's defaults, except the session timeout at the broker's minimum
    (group.min.session.timeout.ms, 6 s) so a killed dispatcher's partitions move sooner."""
    return KafkaUnderTest(bootstrap_servers, idempotence=True, session_timeout_ms=6000, backend="apache")


@contextlib.contextmanager
def own_broker(backend: str, workdir: Path) -> Iterator[tuple[OwnBroker, KafkaUnderTest]]:
    """A fresh broker of `backend` for one test, stopped after it."""
    broker: OwnBroker
    if backend == "apache":
        broker = ApacheKafka(workdir=workdir)
        under_test = apache_under_test
    elif backend == "embedded":
        broker = EmbeddedKafka(log_path=workdir / "tansu.log")
        under_test = embedded_under_test
    else:
        import pytest

        pytest.skip(f"needs a broker of its own; the {backend} Kafka cannot be started or frozen")
    broker.start()
    try:
        yield broker, under_test(broker.bootstrap_servers)
    finally:
        broker.stop()
