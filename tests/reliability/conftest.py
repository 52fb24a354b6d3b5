"""Fault tests get a Kafka-protocol broker of their own, so freezing it harms no other test.

The soak test is opt-in. `addopts` deselects it with `-m 'not soak'`, but any `-m` given on the
command line replaces that one, so `pytest -m reliability` would start a ten-minute run. This
hook deselects it (deselected, never skipped) unless the `-m` expression names `soak` or
KANAL_SOAK=1 is set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest, OwnBroker, own_broker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.option.markexpr or "") or os.environ.get("KANAL_SOAK") == "1":
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]


@pytest.fixture
def own_kafka(
    kafka_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OwnBroker, KafkaUnderTest]]:
    """A broker of the test's backend for this test alone (to freeze or kill it)."""
    with own_broker(kafka_backend, tmp_path_factory.mktemp("broker")) as pair:
        yield pair


@pytest.fixture
async def own_cluster(
    request: pytest.FixtureRequest, own_kafka: tuple[OwnBroker, KafkaUnderTest], tmp_path: Path
) -> AsyncIterator[KanalCluster]:
    """All of Kanal on the test's own broker, with the test module's PRODUCE_TIMEOUT (seconds):
    for tests that freeze that broker."""
    _, kafka = own_kafka
    timeout = request.module.PRODUCE_TIMEOUT
    cluster = KanalCluster(kafka, tmp_path, kafka_produce_timeout=str(timeout))
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()
