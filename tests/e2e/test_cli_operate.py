"""The operator's commands against real processes: `kanal describe` shows the true delivery
counts and lag, `kanal get` a true LAG column, `kanal get -w` a line per change, `kanal tail`
the Broker's events (its filter proven by a sentinel), and `kanal replay` its progress line on a
terminal.

Every event goes to one partition (one partition key), so the offsets each test expects are
exactly the events it posted. Each test has a namespace of its own, since the statistics topic
is shared by every cluster on one Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_batch
from support.polling import until
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

KEY = "one"  # the partition key of every event: one partition, offsets in posting order


def _namespace() -> str:
    return f"op{uuid.uuid4().hex[:8]}"


def _trigger(ns: str, name: str, event_type: str, url: str, delivery: str = "", dead_topic: str = "") -> str:
    annotations = f", annotations: {{kanal.dev/dead-letter-topic: {dead_topic}}}" if dead_topic else ""
    return (
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        f"metadata: {{name: {name}, namespace: {ns}{annotations}}}\n"
        f"spec:\n  broker: default\n  filter: {{attributes: {{type: {event_type}}}}}\n"
        f"  subscriber: {{uri: '{url}'}}\n" + (f"  delivery: {delivery}\n" if delivery else "")
    )


def _broker(ns: str) -> str:
    return (
        f"apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default, namespace: {ns}}}\n"
    )


async def _post(cluster: KanalCluster, ns: str, events: list[tuple[str, str]]) -> None:
    await post_batch(cluster.broker_url(ns, "default"), events, "cli-test", partitionkey=KEY)


def _lags(cluster: KanalCluster, ns: str) -> dict[str, str]:
    result = cluster.kanal("get", "triggers", "-n", ns)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "READY", "REASON", "BROKER", "SUBSCRIBER_URI", "LAG", "AGE"]
    return {row.split()[0]: row.split()[-2] for row in rows}


@pytest.fixture
async def release() -> AsyncIterator[asyncio.Event]:
    event = asyncio.Event()
    yield event
    event.set()


@pytest.mark.timeout(240)
async def test_describe_and_get_show_the_true_counts_and_lag(
    cluster: KanalCluster, release: asyncio.Event
) -> None:
    ns = _namespace()
    good = await RecordingSink().start()
    failing = await RecordingSink(lambda n, r: web.Response(status=500)).start()
    dead = await RecordingSink().start()

    async def held(n: int, _: Received) -> web.StreamResponse:
        if n > 1:  # the first is answered at once; the rest wait until the test ends
            await release.wait()
        return web.Response(status=202)

    slow = await RecordingSink(held).start()
    try:
        await cluster.apply(
            _broker(ns)
            + _trigger(ns, "good", "x", good.url)
            + _trigger(
                ns,
                "failing",
                "x",
                failing.url,
                f"{{retry: 2, backoffDelay: PT0.05S, deadLetterSink: {{uri: '{dead.url}'}}}}",
            )
            # Its deliveries wait (longer than the test) for the test to end.
            + _trigger(ns, "slow", "slow", slow.url, "{timeout: PT100S}")
        )
        await _post(cluster, ns, [(f"x{i}", "x") for i in range(5)] + [("other", "y")])  # offsets 0-5
        await good.wait_for(5)
        await dead.wait_for(5)
        await failing.wait_for(15)
        await _post(cluster, ns, [("warm", "slow")])  # offset 6, delivered and committed
        await slow.wait_for(1)
        await until(lambda: (_lags(cluster, ns)["slow"] == "0", str(_lags(cluster, ns))), "slow's lag 0")
        await _post(cluster, ns, [(f"s{i}", "slow") for i in range(5)])  # offsets 7-11, held
        await slow.wait_for(2)

        # The LAG column: the held Trigger is 5 behind on the partition; the others are done.
        def lag_of_slow() -> tuple[bool, str]:
            cells = _lags(cluster, ns)
            return cells["slow"] == "5", json.dumps(cells)

        lags = json.loads(await until(lag_of_slow, "slow's lag 5"))
        assert lags == {"good": "0", "failing": "0", "slow": "5"}

        def described(name: str, *expect: str) -> Callable[[], tuple[bool, str]]:
            def check() -> tuple[bool, str]:
                result = cluster.kanal("describe", "trigger", name, "-n", ns)
                assert result.returncode == 0, result.stderr
                return all(line in result.stdout for line in expect), result.stdout

            return check

        # The statistics are published every few seconds: the dead letters may be in one record
        # before the held events the Trigger filtered out are in the next.
        text = await until(
            described("failing", "Dead-lettered:  5", "Filtered out:   7"), "failing's statistics"
        )
        lines = text.splitlines()
        assert "  Delivered:      0" in lines and "  Retried:        10" in lines, text
        assert "  Dropped:        0" in lines, text
        assert re.search(r"^  Last error:     500 at \d{4}-\d\d-\d\dT", text, re.M), text
        assert f"Subscriber:   {failing.url}" in lines and f"Dead letter:  {dead.url}" in lines
        assert re.search(r"^  Ready +True$", text, re.M), text
        assert "  Filtered out:   7" in lines, text  # "other", "warm" and the five held

        text = await until(described("good", "Delivered:      5"), "good's statistics")
        lines = text.splitlines()
        assert "  Retried:        0" in lines and "  Dead-lettered:  0" in lines, text
        assert "  Last error:     <none>" in lines, text
        rows = [line.split() for line in lines if re.match(r"^  \d+ ", line)]
        used = [row[1:] for row in rows if row[2] != "0"]  # the partition of KEY
        assert used == [["12", "12", "0"]], text  # committed, end, lag
        assert all(row[3] in ("0", "-") for row in rows), text

        text = await until(described("slow", "Lag ("), "slow's lag")
        rows = [line.split() for line in text.splitlines() if re.match(r"^  \d+ ", line)]
        assert [row[1:] for row in rows if row[2] != "0"] == [["7", "12", "5"]], text
        assert "  Total: 5" in text.splitlines()

        broker = cluster.kanal("describe", "broker", "default", "-n", ns)
        assert broker.returncode == 0, broker.stderr
        table = {
            line.split()[0]: line.split()[1:] for line in broker.stdout.splitlines() if line.startswith("  ")
        }
        assert table["good"] == ["True", "5", "0", "0", "0", "0"], broker.stdout
        assert table["failing"] == ["True", "0", "10", "5", "0", "0"], broker.stdout
        assert table["slow"][-1] == "5", broker.stdout

        missing = cluster.kanal("describe", "trigger", "nothing", "-n", ns)
        assert missing.returncode == 1 and "nothing" in missing.stderr
    finally:
        release.set()
        for sink in (good, failing, dead, slow):
            await sink.close()


async def test_tail_prints_matching_events_and_drops_the_rest(cluster: KanalCluster) -> None:
    ns = _namespace()
    await cluster.apply(_broker(ns))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kanal",
        "tail",
        "broker",
        "default",
        "-n",
        ns,
        "--filter",
        "type = 'keep' OR id = 'sentinel'",
        "-o",
        "json",
        "--max-events",
        "3",
        env=cluster.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        ready = await asyncio.wait_for(process.stderr.readline(), 60)
        assert b"from its end" in ready, ready
        # Before the sentinel: two that match and two that do not, on one partition in order.
        await _post(cluster, ns, [("d1", "drop"), ("k1", "keep"), ("d2", "drop"), ("k2", "keep")])
        await _post(cluster, ns, [("sentinel", "done")])
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err
        events = [json.loads(line) for line in out.decode().splitlines()]
        assert [e["id"] for e in events] == ["k1", "k2", "sentinel"]
        assert events[0]["source"] == "cli-test" and events[0]["data"] == {"id": "k1"}
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    # From the beginning, in event-display's format.
    shown = await asyncio.to_thread(
        cluster.kanal, "tail", "broker", "default", "-n", ns, "--from-beginning", "--max-events", "1"
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(
        "☁️  cloudevents.Event\nContext Attributes,\n  specversion: 1.0\n  type: drop"
    )

    bad = await asyncio.to_thread(cluster.kanal, "tail", "broker", "default", "-n", ns, "--filter", "type =")
    assert bad.returncode == 2 and "--filter" in bad.stderr


async def test_get_watch_prints_a_line_per_change_and_stops_on_ctrl_c(cluster: KanalCluster) -> None:
    ns = _namespace()
    sink = await RecordingSink().start()
    try:
        await cluster.apply(_broker(ns) + _trigger(ns, "first", "x", sink.url))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kanal",
            "get",
            "triggers",
            "-n",
            ns,
            "-w",
            env=cluster.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        stdout = process.stdout
        header = await asyncio.wait_for(stdout.readline(), 60)
        assert header.split() == [b"NAME", b"READY", b"REASON", b"BROKER", b"SUBSCRIBER_URI", b"LAG", b"AGE"]

        async def until_row(name: bytes, *, ready: bool = False) -> None:
            """Read lines until one is `name`'s row (and says Ready, if asked)."""
            while True:
                row = (await asyncio.wait_for(stdout.readline(), 30)).split()
                if row[:1] == [name] and (not ready or row[1:2] == [b"True"]):
                    return

        # The table, then a line when the Trigger became Ready if it was not yet when printed.
        await until_row(b"first", ready=True)
        await cluster.apply(_trigger(ns, "second", "y", sink.url))
        await until_row(b"second")
        deleted = await asyncio.to_thread(cluster.kanal, "delete", "trigger", "first", "-n", ns)
        assert deleted.returncode == 0, deleted.stderr
        await until_row(b"first")  # gone: its last row once more

        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0 and b"Traceback" not in err, err
    finally:
        await sink.close()


def _on_a_terminal(cluster: KanalCluster, *args: str) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """Run `kanal ARGS` with stderr on a pseudo-terminal (stdout a pipe): the result, and what
    it drew on the terminal."""
    primary, secondary = pty.openpty()
    try:
        try:
            result = subprocess.run(
                [sys.executable, "-m", "kanal", *args],
                env=cluster.env,
                stdout=subprocess.PIPE,
                stderr=secondary,
                timeout=60,
            )
        finally:
            os.close(secondary)
        drawn = b""
        with contextlib.suppress(OSError):  # EIO once everything is read
            while chunk := os.read(primary, 65536):
                drawn += chunk
    finally:
        os.close(primary)
    return result, drawn.decode(errors="replace")


async def test_replay_and_redrive_draw_their_progress_on_a_terminal(cluster: KanalCluster) -> None:
    ns = _namespace()
    sink = await RecordingSink().start()
    refusing = await RecordingSink(lambda n, r: web.Response(status=400)).start()  # dead-lettered at once
    dead_topic = f"dead.{uuid.uuid4().hex[:8]}"
    try:
        await cluster.apply(
            _broker(ns)
            + _trigger(ns, "t", "x", sink.url)
            + _trigger(ns, "refused", "r", refusing.url, dead_topic=dead_topic)
        )
        await _post(cluster, ns, [(f"e{i}", "x") for i in range(30)] + [(f"r{i}", "r") for i in range(20)])
        await sink.wait_for(30)
        await refusing.wait_for(20)

        result, drawn = await asyncio.to_thread(
            _on_a_terminal, cluster, "replay", "trigger", "t", "-n", ns, "--from", "0"
        )
        assert result.returncode == 0, drawn
        assert b"delivered 30" in result.stdout
        assert re.search(r"\rreplaying 50/50 \[#+\] 100%  [\d,]+/s  ETA 0s", drawn), drawn
        await sink.wait_for(60)

        def listed() -> tuple[bool, str]:
            shown = cluster.kanal("deadletters", "list", "--trigger", "refused", "-n", ns)
            return len(shown.stdout.splitlines()) == 21, shown.stdout + shown.stderr

        await until(listed, "20 dead letters")
        result, drawn = await asyncio.to_thread(
            _on_a_terminal, cluster, "deadletters", "redrive", "--trigger", "refused", "-n", ns
        )
        assert result.returncode == 0, drawn
        assert b"20 dead letters sent" in result.stdout
        assert re.search(r"\rredriving 20/20 \[#+\] 100%  [\d,]+/s  ETA 0s", drawn), drawn
        await refusing.wait_for(40)  # sent back, and refused again
    finally:
        await sink.close()
        await refusing.close()


async def test_describe_a_channel_and_its_subscription(cluster: KanalCluster) -> None:
    ns = _namespace()
    sink = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: {{name: orders, namespace: {ns}}}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {{name: audit, namespace: {ns}}}
spec:
  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: orders}}
  subscriber: {{uri: "{sink.url}"}}
""")
        channel = json.loads(cluster.kanal("get", "channel", "orders", "-n", ns, "-o", "json").stdout)
        await post_batch(
            channel["status"]["address"]["url"], [(f"c{i}", "order") for i in range(3)], "cli-test"
        )
        await sink.wait_for(3)

        def described() -> tuple[bool, str]:
            shown = cluster.kanal("describe", "subscription", "audit", "-n", ns)
            assert shown.returncode == 0, shown.stderr
            return "  Delivered:      3" in shown.stdout.splitlines(), shown.stdout

        text = await until(described, "audit's statistics")
        assert "Channel:      orders" in text and f"Subscriber:   {sink.url}" in text
        assert "Group:        kanal.subscription." in text and "  Total: 0" in text

        shown = await asyncio.to_thread(cluster.kanal, "describe", "channel", "orders", "-n", ns)
        assert shown.returncode == 0, shown.stderr
        assert f"Address:      {channel['status']['address']['url']}" in shown.stdout
        rows = {
            line.split()[0]: line.split()[1:]
            for line in shown.stdout.splitlines()
            if line.startswith("  audit")
        }
        assert rows == {"audit": ["True", "3", "0", "0", "0", "0"]}, shown.stdout
    finally:
        await sink.close()
