"""The Apache Kafka version is stated once (deploy/kafka/pom.xml); the compose file's image, the
chart's documentation and the broker the tests run agree with it."""

from __future__ import annotations

import re
from pathlib import Path

from support.apache_kafka import compat_version, compose_image_tag, compose_properties, kafka_version

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_a_4x_release_and_the_compat_one_a_3x() -> None:
    assert re.fullmatch(r"4\.\d+\.\d+", kafka_version())
    assert re.fullmatch(r"3\.9\.\d+", compat_version())


def test_the_compose_image_is_the_tested_version() -> None:
    assert compose_image_tag() == kafka_version()


def test_the_charts_docs_name_the_tested_versions() -> None:
    text = (ROOT / "charts" / "kanal" / "README.md").read_text()
    assert f"Apache Kafka {kafka_version()}" in text
    assert f"Apache Kafka {compat_version()}" in text
    assert set(re.findall(r"Apache Kafka (\d+\.\d+\.\d+)", text)) == {kafka_version(), compat_version()}


def test_the_compose_environment_maps_to_broker_properties_as_the_image_does() -> None:
    properties = compose_properties()
    assert properties["process.roles"] == "broker,controller"
    assert properties["group.initial.rebalance.delay.ms"] == "0"
    assert properties["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert all(key == key.lower() and "_" not in key for key in properties)


def test_variable_names_map_like_the_image(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(
        "services:\n  kafka:\n    image: apache/kafka:9.9.9\n    environment:\n"
        "      KAFKA_LOG_RETENTION_MS: 5\n"
        "      KAFKA_LISTENER_NAME_SASL___SSL_SCRAM__SHA__512_X: y\n"
        "      CLUSTER_ID: not-a-property\n"
    )
    expected = {"log.retention.ms": "5", "listener.name.sasl-ssl.scram_sha_512.x": "y"}
    assert compose_properties(compose) == expected
    assert compose_image_tag(compose) == "9.9.9"
