"""The destination policy end to end: a Trigger to the cloud metadata address or to Kanal's own
admin port is not Ready and says why; a Trigger whose host name resolves into a denied range is
Ready (the name itself is allowed), but each attempt fails when the dispatcher resolves it, and the
event is dead-lettered; a subscriber on loopback at another port is delivered to as ever."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator

import pytest

from channel.embedded import free_port
from support.cluster import KanalCluster
from support.events import post_event
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

NAMESPACE = "policy"
# The port of a subscriber that `localhost` names: denied on every loopback address.
DENIED_PORT = free_port()


@pytest.fixture
def cluster_settings() -> dict[str, str]:
    return {"delivery_deny": f"169.254.0.0/16,fd00:ec2::254,127.0.0.0/8:{DENIED_PORT},[::1]:{DENIED_PORT}"}


@pytest.fixture
async def sinks() -> AsyncIterator[dict[str, RecordingSink]]:
    started = {
        "denied": RecordingSink(),
        "allowed": await RecordingSink().start(),
        "dead-letters": await RecordingSink().start(),
    }
    started["denied"].port = DENIED_PORT
    await started["denied"].start()
    try:
        yield started
    finally:
        for sink in started.values():
            await sink.close()


def _trigger(name: str, url: str, delivery: str = "") -> str:
    return (
        f"---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        f"metadata: {{name: {name}, namespace: {NAMESPACE}}}\n"
        f"spec:\n  broker: default\n  filter: {{attributes: {{type: {name}}}}}\n"
        f"  subscriber: {{uri: '{url}'}}\n" + (f"  delivery: {delivery}\n" if delivery else "")
    )


def _ready(cluster: KanalCluster, name: str) -> dict[str, str]:
    result = cluster.kanal("get", "trigger", name, "-n", NAMESPACE, "-o", "json")
    assert result.returncode == 0, result.stderr
    conditions = json.loads(result.stdout)["status"]["conditions"]
    return next(c for c in conditions if c["type"] == "Ready")


async def test_denied_destinations(cluster: KanalCluster, sinks: dict[str, RecordingSink]) -> None:
    metrics = f"http://127.0.0.1:{cluster.ports['dispatcher']}/metrics"
    dead = sinks["dead-letters"].url
    await cluster.apply(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\n"
        f"metadata: {{name: default, namespace: {NAMESPACE}}}\n"
        + _trigger("metadata", "http://169.254.169.254/latest/meta-data")
        + _trigger("own-port", metrics)
        + _trigger(
            "resolved",
            f"http://localhost:{DENIED_PORT}/",
            f"{{retry: 2, backoffPolicy: linear, backoffDelay: PT0.05S, deadLetterSink: {{uri: '{dead}'}}}}",
        )
        + _trigger("allowed", sinks["allowed"].url)
    )

    # Refused when applied: not Ready, the reason and the rule in what `kanal get` shows.
    table = cluster.kanal("get", "triggers", "-n", NAMESPACE).stdout
    print(table)
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["metadata"][1:3] == ["False", "DestinationDenied"]
    assert rows["own-port"][1:3] == ["False", "DestinationDenied"]
    assert rows["resolved"][1] == "True" and rows["allowed"][1] == "True"
    metadata = _ready(cluster, "metadata")
    assert metadata["message"] == (
        "subscriber http://169.254.169.254/latest/meta-data: 169.254.169.254:80 is denied by the "
        "destination policy (KANAL_DELIVERY_DENY 169.254.0.0/16)"
    )
    assert "the dispatcher's health and metrics" in _ready(cluster, "own-port")["message"]

    # Refused when the dispatcher resolves the name: every attempt fails, the event is dead-lettered.
    url = cluster.broker_url(NAMESPACE, "default")
    await post_event(url, "to-denied", "resolved", "test")
    await post_event(url, "to-allowed", "allowed", "test")
    await sinks["dead-letters"].wait_for(1, timeout=30)
    await sinks["allowed"].wait_for(1, timeout=30)
    [dead_letter] = sinks["dead-letters"].requests
    assert dead_letter.header("ce-id") == "to-denied"
    assert dead_letter.header("ce-knativeerrordest") == f"http://localhost:{DENIED_PORT}/"
    assert dead_letter.header("ce-knativeerrorcode") is None  # no answer, as for a refused connection
    assert sinks["allowed"].ids() == ["to-allowed"]
    assert sinks["denied"].requests == []
    attempts = await asyncio.to_thread(_attempts_without_answer, metrics)
    assert attempts == 3  # retry: 2, then the dead letter


def _attempts_without_answer(metrics_url: str) -> float:
    """The `resolved` Trigger's attempts with no status, from the dispatcher's metrics."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        labels = ('trigger="resolved"', 'destination="subscriber"', 'code="none"')
        if line.startswith("kanal_dispatcher_attempts_total{") and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total
