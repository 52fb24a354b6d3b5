"""`kanal dev` as a user runs it: the embedded broker, every component, two event displays and the
getting-started example; the tutorial's three curl requests; the CLI finds the run's Kafka by
itself (describe, tail); Ctrl-C stops everything cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from channel.embedded import free_port
from support.dev import KanalDev

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "getting-started"


def _block(output: str, display: str, event_id: str) -> list[str]:
    """The lines one display printed for one event."""
    lines = [line.split("] ", 1)[1] for line in output.splitlines() if line.startswith(f"[{display}] ")]
    starts = [i for i, line in enumerate(lines) if line.startswith("☁️  cloudevents.Event")]
    for i, start in enumerate(starts):
        block = lines[start : starts[i + 1] if i + 1 < len(starts) else len(lines)]
        if f"  id: {event_id}" in block:
            return block
    return []


def _kanal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kanal", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _cli_finds_kafka(env: dict[str, str]) -> None:
    """With no KANAL_KAFKA_BOOTSTRAP_SERVERS, the CLI reads the run's Kafka from the file kanal dev
    wrote: describe shows the statistics and lag, tail the Broker's events."""
    deadline = time.monotonic() + 30
    shown = _kanal(env, "describe", "trigger", "hello-display", "-n", "event-example")
    while "  Delivered:      2" not in shown.stdout.splitlines() and time.monotonic() < deadline:
        time.sleep(0.5)
        shown = _kanal(env, "describe", "trigger", "hello-display", "-n", "event-example")
    assert "  Delivered:      2" in shown.stdout.splitlines(), shown.stdout + shown.stderr
    assert "  Total: 0" in shown.stdout.splitlines(), shown.stdout
    tail = _kanal(
        env,
        "tail",
        "broker",
        "default",
        "-n",
        "event-example",
        "--from-beginning",
        "-o",
        "json",
        "--max-events",
        "3",
    )
    assert tail.returncode == 0, tail.stderr
    ids = sorted(json.loads(line)["id"] for line in tail.stdout.splitlines())
    assert ids == ["say-goodbye", "say-hello", "say-hello-goodbye"]


def test_kanal_dev_getting_started_and_ctrl_c(tmp_path: Path) -> None:
    hello, goodbye = free_port(), free_port()
    for name in ("01-broker.yaml", "02-triggers.yaml"):
        text = (EXAMPLES / name).read_text()
        text = text.replace("127.0.0.1:9001", f"127.0.0.1:{hello}").replace(
            "127.0.0.1:9002", f"127.0.0.1:{goodbye}"
        )
        (tmp_path / name).write_text(text)
    ports = {
        "KANAL_INGRESS_PORT": free_port(),
        "KANAL_CONTROLLER_PORT": free_port(),
        "KANAL_DISPATCHER_PORT": free_port(),
        "KANAL_INGRESS_METRICS_PORT": free_port(),
    }
    env = {k: v for k, v in os.environ.items() if k != "KANAL_KAFKA_BOOTSTRAP_SERVERS"}
    env.update({k: str(v) for k, v in ports.items()})
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # the admin API token it makes goes there
    sinks = ("--sink", f"hello-display={hello}", "--sink", f"goodbye-display={goodbye}")
    dev = KanalDev(env, "--apply", str(tmp_path), *sinks)
    try:
        dev.wait_ready()
        send = subprocess.run(
            ["sh", str(EXAMPLES / "send-events.sh")],
            env={
                **env,
                "KANAL_BROKER_URL": f"http://127.0.0.1:{ports['KANAL_INGRESS_PORT']}/event-example/default",
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert send.stdout.splitlines() == ["say-hello: 202", "say-goodbye: 202", "say-hello-goodbye: 202"]
        # The ingress's metrics are on the port kanal dev printed, not on the ingress port.
        metrics = f"http://127.0.0.1:{ports['KANAL_INGRESS_METRICS_PORT']}/metrics"
        assert metrics in dev.output
        with urllib.request.urlopen(metrics, timeout=10) as response:
            lines = response.read().splitlines()
        assert any(x.startswith(b"kanal_ingress_events_total{") and b"event-example" in x for x in lines)
        deadline = time.monotonic() + 30
        while dev.output.count("☁️  cloudevents.Event") < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        _cli_finds_kafka(env)
    finally:
        code = dev.interrupt()
    kafka_files = tmp_path / "config" / "kanal" / "kafka"
    assert not any(kafka_files.iterdir()), "kanal dev left its Kafka file behind"
    text = dev.output
    assert code == 0, text
    assert text.rstrip().endswith("kanal dev: stopped")
    assert text.count("☁️  cloudevents.Event") == 4
    assert _block(text, "hello-display", "say-hello") == [
        "☁️  cloudevents.Event",
        "Context Attributes,",
        "  specversion: 1.0",
        "  type: greeting",
        "  source: not-sendoff",
        "  id: say-hello",
        "  datacontenttype: application/json",
        "Data,",
        "  {",
        '    "msg": "Hello Knative!"',
        "  }",
    ]
    assert _block(text, "hello-display", "say-hello-goodbye")
    assert _block(text, "goodbye-display", "say-goodbye")
    assert _block(text, "goodbye-display", "say-hello-goodbye")
    assert not _block(text, "hello-display", "say-goodbye")
    assert not _block(text, "goodbye-display", "say-hello")
