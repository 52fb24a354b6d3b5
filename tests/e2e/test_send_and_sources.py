"""`kanal send` and `kanal source run` against a running Kanal: events reach a Trigger's
subscriber exactly as described on the command line; mistakes are clear errors."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
