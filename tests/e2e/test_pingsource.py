"""PingSource with real controllers: one event per tick to the sink; after a SIGKILL and a
restart no tick is missing (and one in flight at the kill may come again, with its id); with
controller replicas joining and leaving, no tick is missing and none is sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from channel.control.log import ResourceLog
from channel.embedded import free_port
from channel.resources.model import PingSource
from channel.sources.scheduler import PingScheduler
from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

# Every 2 seconds: Kanal's six-field schedule (seconds first); Knative's has minutes at best.
PING = """
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {{name: heartbeat, namespace: ping}}
spec:
  schedule: "*/2 * * * * *"
  contentType: application/json
  data: '{{"message": "Hello world!"}}'
  sink: {{uri: "{url}"}}
"""


@pytest.fixture
async def cluster(kafka: KafkaUnderTest, tmp_path: Path) -> AsyncIterator[KanalCluster]:
    cluster = KanalCluster(kafka, tmp_path)
    try:
        await cluster.start("controller")
        yield cluster
    finally:
        cluster.stop()


def _time(r: Received) -> datetime:
    return datetime.fromisoformat((r.header("ce-time") or "").replace("Z", "+00:00"))


def _assert_every_tick_once(requests: list[Received], allowed_repeats: int = 0) -> list[datetime]:
    times = sorted({_time(r) for r in requests})
    assert len(times) >= 2
    expected = [times[0] + timedelta(seconds=2 * i) for i in range(len(times))]
    assert times == expected, f"missing ticks: {sorted(set(expected) - set(times))}"
    repeats = [(i, n) for i, n in Counter(r.header("ce-id") for r in requests).items() if n > 1]
    assert len(repeats) <= allowed_repeats, repeats
    # A tick has one id, whoever sent it and however often: sinks dedupe on it.
    ids = {(r.header("ce-time"), r.header("ce-id")) for r in requests}
    assert len(ids) == len(times), sorted(ids)
    for r in requests:
        assert r.header("ce-type") == "dev.knative.sources.ping"
        assert r.header("ce-source") == "/apis/v1/namespaces/ping/pingsources/heartbeat"
        assert r.body == b'{"message": "Hello world!"}'
    return times


async def test_ticks_survive_a_controller_kill(cluster: KanalCluster) -> None:
    sink = await RecordingSink().start()
    try:
        await cluster.apply(PING.format(url=sink.url))
        result = await asyncio.to_thread(cluster.kanal, "get", "sources", "-n", "ping")
        assert result.returncode == 0, result.stderr
        assert "heartbeat" in result.stdout and "PingSource" in result.stdout
        await sink.wait_for(3, timeout=30)
        cluster.kill("controller", signal.SIGKILL)
        killed = datetime.now(UTC)
        await asyncio.sleep(5)  # about two ticks pass with no controller
        restarted = datetime.now(UTC)
        await cluster.start("controller")
        before = len(sink.requests)
        await sink.wait_for(before + 4, timeout=60)
        # A kill between a send and its record may repeat that one tick, with the same id.
        times = _assert_every_tick_once(list(sink.requests), allowed_repeats=1)
        # The ticks due while no controller ran were sent late, not skipped.
        assert [t for t in times if killed + timedelta(seconds=1) < t < restarted], (times, killed, restarted)
    finally:
        await sink.close()


async def test_replicas_joining_and_leaving_send_each_tick_once(
    cluster: KanalCluster, tmp_path: Path
) -> None:
    sink = await RecordingSink().start()
    port = free_port()
    env = dict(cluster.env, KANAL_CONTROLLER_PORT=str(port))
    log = (tmp_path / "controller-2.log").open("wb")
    second: subprocess.Popen[bytes] | None = None
    try:
        await cluster.apply(PING.format(url=sink.url))
        await sink.wait_for(3, timeout=30)
        # A second replica joins while ticks are sent: Kafka rebalances the ticks partition,
        # possibly to the newcomer; the one losing it records its tick before letting go.
        second = subprocess.Popen(
            [sys.executable, "-m", "kanal", "controller"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        await _wait_ready(port)
        count = len(sink.requests)
        await sink.wait_for(count + 4, timeout=60)
        _assert_every_tick_once(list(sink.requests))
        # The first replica stops: whichever held the partition, the other one goes on.
        cluster.kill("controller", signal.SIGTERM)
        count = len(sink.requests)
        await sink.wait_for(count + 4, timeout=60)
        _assert_every_tick_once(list(sink.requests))
    finally:
        if second is not None:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=15)
            except subprocess.TimeoutExpired:
                second.kill()
        log.close()
        await sink.close()


async def _wait_ready(port: int, timeout: float = 60.0) -> None:
    url = f"http://127.0.0.1:{port}/readyz"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            with await asyncio.to_thread(urllib.request.urlopen, url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"the second controller was not ready within {timeout}s")


class _Clock:
    """The scheduler's clock, moved by the test: Knative's minute schedules in seconds."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _ready_source(sink_url: str) -> PingSource:
    return PingSource.model_validate(
        {
            "apiVersion": "sources.knative.dev/v1",
            "kind": "PingSource",
            "metadata": {
                "name": "minutely",
                "namespace": "ping",
                "uid": str(uuid.uuid4()),
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {"schedule": "* * * * *", "data": "tick", "sink": {"uri": sink_url}},
            "status": {"sinkUri": sink_url, "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )


async def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_minute_schedule_with_a_moved_clock(kafka: KafkaUnderTest) -> None:
    """`* * * * *` with an injected clock: a graceful stop and a take-over repeat and skip
    nothing, ticks missed while no scheduler ran are sent late up to the catch-up limit, a
    second replica sends nothing twice, and a deleted source's tick record goes."""
    settings = kafka.settings(kafka_ticks_topic=f"kanal.ticks.{uuid.uuid4().hex[:10]}", ping_catch_up=300)
    sink = await RecordingSink().start()
    source = _ready_source(sink.url)
    clock = _Clock(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
    minute = timedelta(minutes=1)

    running: list[tuple[PingScheduler, asyncio.Task[None]]] = []

    def scheduler() -> tuple[PingScheduler, asyncio.Task[None]]:
        made = PingScheduler(settings, lambda: [source], clock=clock)
        running.append((made, asyncio.create_task(made.run())))
        return running[-1]

    def minutes() -> list[int]:
        return sorted(_time(r).minute for r in sink.requests)

    first, first_task = scheduler()
    try:
        await _until(lambda: first.owner)
        clock.now += 3 * minute  # 00:03:30
        await sink.wait_for(3)
        first.stop()
        await asyncio.wait_for(first_task, 30)
        assert minutes() == [1, 2, 3]
        # Nine minutes pass with no scheduler: 00:04 to 00:12 are due, the last five are young
        # enough (300 s) and are sent late with their own time, 00:04 to 00:07 are skipped.
        clock.now += 9 * minute
        second, _ = scheduler()
        await _until(lambda: second.owner)
        await sink.wait_for(8)
        assert minutes() == [1, 2, 3, 8, 9, 10, 11, 12]
        # A replica joins; each further minute is sent once, by whichever holds the partition.
        scheduler()
        for _ in range(3):
            clock.now += minute
            await sink.wait_for(len(sink.requests) + 1, timeout=40)
        await asyncio.sleep(1.0)
        assert minutes() == [1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15]
        assert len({r.header("ce-id") for r in sink.requests}) == len(sink.requests)
        assert {r.body for r in sink.requests} == {b"tick"}
        # The source is deleted: the scheduler that holds the partition deletes its tick record.
        for made, task in running:
            made.stop()
            await asyncio.wait_for(task, 30)
        running.clear()
        ticks = ResourceLog(settings, topic=settings.kafka_ticks_topic)
        async with ticks, asyncio.TaskGroup() as tasks:
            follower = tasks.create_task(ticks.run())
            await _until(lambda: source.metadata.uid in ticks.documents)
            cleaner = PingScheduler(settings, list, clock=clock, live_uids=set)
            running.append((cleaner, asyncio.create_task(cleaner.run())))
            await _until(lambda: source.metadata.uid not in ticks.documents)
            follower.cancel()
    finally:
        for made, task in running:
            made.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, 30)
        await sink.close()
