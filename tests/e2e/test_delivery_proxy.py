"""Deliveries through the proxy the dispatcher's environment names (HTTP_PROXY, NO_PROXY), as a
cluster with egress through a proxy runs it; a proxy setting Kanal cannot use stops it at start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest
from support.proxy import forward_proxy
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

RESOURCES = """\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: p}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: outside, namespace: p}}
spec: {{broker: default, filter: {{attributes: {{type: outside}}}}, subscriber: {{uri: '{outside}'}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: inside, namespace: p}}
spec: {{broker: default, filter: {{attributes: {{type: inside}}}}, subscriber: {{uri: '{inside}'}}}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {{name: ping-outside, namespace: p}}
spec:
  schedule: "* * * * * *"
  data: '{{"from": "ping"}}'
  sink: {{uri: "{outside}ping"}}
"""


async def test_deliveries_go_through_the_proxy_except_to_loopback(
    kafka: KafkaUnderTest, tmp_path: Path
) -> None:
    """`hooks.test` resolves nowhere but in the proxy (which sends it to loopback): the event
    reaches the sink only if the dispatcher really went through the proxy, and a PingSource's
    event only if the controller did. The proxy wants credentials, given in HTTP_PROXY. The
    loopback subscriber, and `kanal apply` to the controller, are reached directly."""
    sink = await RecordingSink().start()
    try:
        async with forward_proxy(credentials="Basic a2FuYWw6czNjcmV0") as proxy:
            cluster = KanalCluster(kafka, tmp_path)
            cluster.env.update(
                {"HTTP_PROXY": f"http://kanal:s3cret@127.0.0.1:{proxy.port}", "NO_PROXY": ".svc"}
            )
            try:
                await cluster.start()
                await cluster.apply(
                    RESOURCES.format(outside=f"http://hooks.test:{sink.port}/", inside=sink.url)
                )
                async with aiohttp.ClientSession() as session:
                    for event_type in ("outside", "inside"):
                        headers = {
                            "ce-id": event_type,
                            "ce-specversion": "1.0",
                            "ce-type": event_type,
                            "ce-source": "t",
                        }
                        async with session.post(
                            cluster.broker_url("p", "default"), data=b"{}", headers=headers
                        ) as r:
                            assert r.status == 202
                async with asyncio.timeout(30):
                    while not (
                        {"outside", "inside"} <= {r.header("ce-id") for r in sink.requests}
                        and any(r.path == "/ping" for r in sink.requests)
                    ):
                        await sink.wait_for(len(sink.requests) + 1, timeout=30)
                received = {r.header("ce-id"): r for r in sink.requests if r.path == "/"}
                assert received["outside"].header("host") == f"hooks.test:{sink.port}"
                assert received["inside"].header("host") == f"127.0.0.1:{sink.port}"
                pings = [r for r in sink.requests if r.path == "/ping"]
                assert pings and pings[0].header("ce-type") == "dev.knative.sources.ping"
                assert pings[0].header("host") == f"hooks.test:{sink.port}"
                assert pings[0].header("proxy-authorization") is None  # the proxy's, not the sink's
                assert f"POST http://hooks.test:{sink.port}/ HTTP/1.1" in proxy.lines
                assert f"POST http://hooks.test:{sink.port}/ping HTTP/1.1" in proxy.lines
                assert set(proxy.authorizations) == {"Basic a2FuYWw6czNjcmV0"}  # every request
                assert all("/v1/" not in line for line in proxy.lines)  # kanal apply went direct
                assert "deliveries go through proxies http=127.0.0.1:" in cluster.tail("dispatcher", 200)
            finally:
                cluster.stop()
    finally:
        await sink.close()


def test_a_proxy_kanal_cannot_use_stops_the_dispatcher_at_start() -> None:
    """Before it reaches for Kafka: no traceback, one line naming the setting's value."""
    env = dict(
        os.environ, HTTPS_PROXY="socks5://proxy.internal:1080", KANAL_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"
    )
    done = subprocess.run(
        [sys.executable, "-m", "kanal", "dispatcher"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert (
        "kanal dispatcher: proxy 'socks5://proxy.internal:1080': only http:// proxies are supported"
        in done.stderr
    )
