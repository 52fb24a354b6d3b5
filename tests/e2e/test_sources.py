"""Sources against a running Kanal: a PingSource whose sink is a Broker, `kanal send` and `kanal
source run`. Events reach a Trigger's subscriber exactly as described; mistakes are clear errors.
(The PingSource's once-per-tick guarantees are in test_pingsource.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture
async def sink(cluster: KanalCluster) -> AsyncIterator[RecordingSink]:
    sink = await RecordingSink().start()
    await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: cli}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: all, namespace: cli}}
spec:
  broker: default
  subscriber: {{uri: "{sink.url}"}}
""")
    yield sink
    await sink.close()


async def _kanal(cluster: KanalCluster, *args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(cluster.kanal, *args)
    return result.returncode, result.stdout, result.stderr


async def test_send_binary_and_structured(cluster: KanalCluster, sink: RecordingSink, tmp_path: Path) -> None:
    data = tmp_path / "order.json"
    data.write_bytes(b'{"order": 42,  "note": "spacing kept"}')
    code, out, err = await _kanal(
        cluster,
        "send",
        "--broker",
        "default",
        "-n",
        "cli",
        "--type",
        "order.created",
        "--source",
        "/shop",
        "--id",
        "o-42",
        "--data",
        f"@{data}",
        "-e",
        "team=blue",
    )
    assert code == 0, err
    assert out.startswith("202 o-42 -> http://127.0.0.1:")
    code, out, err = await _kanal(
        cluster,
        "send",
        "--broker",
        "default",
        "-n",
        "cli",
        "--type",
        "note",
        "--source",
        "/shop",
        "--id",
        "n-1",
        "--data",
        "plain words",
        "--structured",
    )
    assert code == 0, err
    received = {r.header("ce-id"): r for r in await sink.wait_for(2)}
    order = received["o-42"]
    assert order.body == data.read_bytes()
    assert order.header("ce-type") == "order.created"
    assert order.header("ce-team") == "blue"
    assert order.header("content-type") == "application/json"
    note = received["n-1"]
    assert note.body == b"plain words"
    assert note.header("content-type") == "text/plain"


async def test_send_mistakes_are_clear(cluster: KanalCluster, sink: RecordingSink) -> None:
    code, _, err = await _kanal(
        cluster, "send", "--broker", "nope", "-n", "cli", "--type", "t", "--source", "s"
    )
    assert code == 1
    assert "nope" in err and "Traceback" not in err
    code, _, err = await _kanal(
        cluster, "send", "--broker", "default", "-n", "cli", "--type", "t", "--source", "s", "-e", "Bad=1"
    )
    assert code == 2
    assert "nothing was sent" in err and "Bad" in err
    code, _, err = await _kanal(
        cluster,
        "send",
        "--broker",
        "default",
        "-n",
        "cli",
        "--type",
        "t",
        "--source",
        "s",
        "--data",
        "@/nonexistent",
    )
    assert code != 0 and "cannot read" in err
    await asyncio.sleep(1.0)
    assert sink.requests == []


async def test_source_run_gives_the_command_its_sink(
    cluster: KanalCluster, sink: RecordingSink, tmp_path: Path
) -> None:
    emitter = tmp_path / "emit.py"
    emitter.write_text(
        textwrap.dedent("""
        import json, os, urllib.request
        extensions = json.loads(os.environ.get("K_CE_OVERRIDES", "{}")).get("extensions", {})
        headers = {"ce-id": "from-source", "ce-specversion": "1.0", "ce-type": "ping",
                   "ce-source": "/emit", "content-type": "application/json"}
        headers.update({"ce-" + k: v for k, v in extensions.items()})
        request = urllib.request.Request(os.environ["K_SINK"], data=b"{}", headers=headers)
        print(urllib.request.urlopen(request).status)
        raise SystemExit(7)
        """)
    )
    code, out, err = await _kanal(
        cluster,
        "source",
        "run",
        "--sink",
        "broker:cli/default",
        "--ce-override",
        "region=north",
        "--",
        sys.executable,
        str(emitter),
    )
    assert code == 7, err
    assert out.strip() == "202"
    [event] = await sink.wait_for(1)
    assert event.header("ce-id") == "from-source"
    assert event.header("ce-region") == "north"
    code, _, err = await _kanal(cluster, "source", "run", "--sink", "broker:cli/missing", "--", "true")
    assert code == 1 and "missing" in err


PING = """
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {{name: beat, namespace: cli}}
spec:
  schedule: "*/2 * * * * *"
  timezone: Europe/Paris
  contentType: application/octet-stream
  dataBase64: "{data}"
  sink:
    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
"""


async def test_pingsource_to_a_broker(cluster: KanalCluster, sink: RecordingSink) -> None:
    raw = bytes([0, 1, 2, 254, 255])
    await cluster.apply(PING.format(data=base64.b64encode(raw).decode()))
    first, second = await sink.wait_for(2, timeout=30)
    for event in (first, second):
        assert event.header("ce-type") == "dev.knative.sources.ping"
        assert event.header("ce-source") == "/apis/v1/namespaces/cli/pingsources/beat"
        assert event.header("content-type") == "application/octet-stream"
        assert event.body == raw
    assert first.header("ce-id") != second.header("ce-id")
    code, out, err = await _kanal(cluster, "get", "sources", "-n", "cli")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["NAME", "TYPE", "RESOURCE", "SINK", "READY", "REASON", "AGE"]
    assert row.split()[:5] == [
        "beat",
        "PingSource",
        "pingsources.sources.knative.dev",
        cluster.broker_url("cli", "default"),
        "True",
    ]
    code, out, err = await _kanal(cluster, "get", "pingsources", "-A", "-o", "json")
    assert code == 0, err
    listed = json.loads(out)
    [doc] = listed["items"] if listed.get("kind") == "List" else [listed]
    assert doc["status"]["sinkUri"] == cluster.broker_url("cli", "default")
    assert doc["spec"]["timezone"] == "Europe/Paris"
    code, _, err = await _kanal(cluster, "delete", "pingsource", "beat", "-n", "cli")
    assert code == 0, err


async def test_an_invalid_pingsource_is_rejected_whole(cluster: KanalCluster, sink: RecordingSink) -> None:
    manifest = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: unused, namespace: cli}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: bad, namespace: cli}
spec:
  schedule: "61 * * * *"
  timezone: Mars/Olympus
  data: "{}"
  dataBase64: "e30="
  sink: {uri: "http://127.0.0.1:1/"}
"""
    result = await asyncio.to_thread(cluster.kanal, "apply", "-f", "-", stdin=manifest)
    assert result.returncode != 0
    err = result.stderr
    assert "nothing was applied" in err and "Traceback" not in err
    for field in ("spec.schedule", "spec.timezone", "spec.dataBase64"):
        assert field in err, err
    code, _, err = await _kanal(cluster, "get", "broker", "unused", "-n", "cli")
    assert code != 0 and "not found" in err.lower()


async def test_send_reports_an_error_answer(cluster: KanalCluster, tmp_path: Path) -> None:
    refusing = await RecordingSink(lambda n, r: web.json_response({"error": "no thanks"}, status=422)).start()
    try:
        code, out, err = await _kanal(
            cluster, "send", "--url", refusing.url, "--type", "t", "--source", "s", "--id", "x-1"
        )
        assert code == 1
        assert out.startswith("422 x-1 -> ")
        assert "no thanks" in err
        [request] = refusing.requests
        assert request.header("ce-id") == "x-1" and request.header("ce-type") == "t"
    finally:
        await refusing.close()


@pytest.mark.parametrize(
    ("handler", "expected"),
    [("signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))", 42), ("", 128 + signal.SIGTERM)],
    ids=["command-handles-it", "command-killed-by-it"],
)
async def test_source_run_passes_sigterm_on(
    cluster: KanalCluster, tmp_path: Path, handler: str, expected: int
) -> None:
    command = tmp_path / "wait.py"
    command.write_text(
        f"import os, signal, sys, time\n{handler}\nprint(os.environ['K_SINK'], flush=True)\ntime.sleep(60)\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kanal",
            "source",
            "run",
            "--sink",
            "http://127.0.0.1:9/",
            "--",
            sys.executable,
            str(command),
        ],
        env=cluster.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
        assert line.strip() == "http://127.0.0.1:9/"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == expected
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
