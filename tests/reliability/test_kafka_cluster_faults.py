"""Faults of a three-broker Apache Kafka cluster (KRaft, replication factor 3,
min.insync.replicas 2, the ingress producing with acks=all) while events flow: a partition
leader killed, two of three brokers killed, the dispatchers' group coordinator killed, a broker
frozen for 30 s, the whole cluster restarted; and dispatcher replicas killed and added. Every
event answered 202 is delivered; every refusal is a 503 with Retry-After, answered within the
produce timeout plus a margin; duplicates are counted and bounded.

Apache Kafka only (the embedded broker has no replication), so nothing here is parametrized over
the backends: the module starts one cluster of its own, each test leaves it whole (every node
running, `brokers` mends what a failed test left), and each test runs its own Kanal with topics
of its own. Blocking calls (a node's restart, its exit) run in threads: the sinks share the
test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from channel.kafka import broker_topic, dispatcher_group
from support.apache_kafka import ApacheKafka, missing_tools
from support.cluster import KanalCluster
from support.events import post_batch
from support.inventory import inventory
from support.kafka import apache_under_test
from support.report import summary
from support.sinks import Received, RecordingSink

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.e2e,
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

PRODUCE_TIMEOUT = 3.0
# What a request may take beyond the produce timeout on a busy 2-core machine running three JVMs.
MARGIN = 3.0
# How long a sender waits for an answer at all: past PRODUCE_TIMEOUT + MARGIN it counts as a hang.
HANG = 30.0
SENDERS = 4
PAUSE = 0.05  # between one sender's requests: about 60 events/s from the four
MAX_EVENTS = 6000  # no test sends more
# KRaft fences a broker that stopped heartbeating after broker.session.timeout.ms (9 s); only then
# do its partitions get new leaders and its replicas leave the ISRs.
FENCING = 9.0
NS = "kc"
BROKER = f"""apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: {NS}}}
"""
RETRY = "{retry: 3, backoffDelay: PT0.2S}"


def _trigger(name: str, subscriber: str, delivery: str = RETRY, event_type: str | None = None) -> str:
    selected = f"\n  filter: {{attributes: {{type: {event_type}}}}}" if event_type else ""
    return f"""---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: {name}, namespace: {NS}}}
spec:
  broker: default{selected}
  subscriber: {{uri: "{subscriber}"}}
  delivery: {delivery}
"""


# -- the cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApacheKafka]:
    """Three Apache Kafka nodes for the module (about 15 s to start)."""
    config = request.config
    chosen = {name.strip() for name in config.getoption("--kafka-backends").split(",")}
    if (
        "apache" not in chosen
        or config.getoption("--kafka-bootstrap")
        or config.getoption("--kafka-testcontainers")
    ):
        pytest.skip("starts an Apache Kafka cluster of its own: runs with --kafka-backends apache")
    if missing := missing_tools():
        pytest.skip(f"Apache Kafka needs {' and '.join(missing)}")
    with ApacheKafka(nodes=3, workdir=tmp_path_factory.mktemp("kafka-cluster")) as kafka:
        yield kafka


def _mend(kafka: ApacheKafka) -> None:
    """Every node running and registered: a frozen one resumed, a stopped one started again."""
    for node in kafka.nodes:
        if node.pid is None:
            kafka.restart(node.node_id, wait=False)
        else:
            kafka.resume(node.node_id)
    kafka.wait_ready()


@pytest.fixture
async def brokers(kafka_cluster: ApacheKafka) -> AsyncIterator[ApacheKafka]:
    """The module's cluster, whole before the test and again after it."""
    await asyncio.to_thread(_mend, kafka_cluster)
    yield kafka_cluster
    await asyncio.to_thread(_mend, kafka_cluster)


@pytest.fixture
async def kanal(brokers: ApacheKafka, tmp_path: Path) -> AsyncIterator[KanalCluster]:
    """Kanal on the cluster: its topics replicated three times, the produce timeout above."""
    cluster = KanalCluster(
        apache_under_test(brokers.bootstrap_servers),
        tmp_path,
        kafka_topic_replication_factor="3",
        kafka_produce_timeout=str(PRODUCE_TIMEOUT),
    )
    try:
        await cluster.start()
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)


@contextlib.asynccontextmanager
async def _admin(kafka: ApacheKafka) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=5000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def _leaders(kafka: ApacheKafka, topic: str) -> dict[int, int]:
    """Each partition of `topic` and the node leading it."""
    async with _admin(kafka) as admin:
        [described] = await admin.describe_topics([topic])
    return {p["partition"]: p["leader"] for p in described["partitions"]}


async def _by_leadership(kafka: ApacheKafka, topic: str) -> tuple[list[int], dict[int, int]]:
    """The nodes, those leading the most of `topic`'s partitions first; and its leaders."""
    leaders = await _leaders(kafka, topic)
    led = Counter(leaders.values())
    return sorted((node.node_id for node in kafka.nodes), key=lambda node: -led[node]), leaders


def _leading(node: int, leaders: dict[int, int]) -> str:
    return f"leader of {sum(leader == node for leader in leaders.values())} of {len(leaders)} partitions"


async def _coordinator(kafka: ApacheKafka, group: str) -> int:
    """The node coordinating `group` (FindCoordinator), once one answers."""
    async with _admin(kafka) as admin, asyncio.timeout(30):
        while True:
            with contextlib.suppress(KafkaError):
                return await admin.find_coordinator(group)
            await asyncio.sleep(0.5)


Assignment = dict[str, list[int]]  # a member (the end of its id) -> its partitions


async def _assignment(kafka: ApacheKafka, group: str) -> tuple[str, Assignment]:
    """The group's state and its members' partitions, as DescribeGroups tells them."""
    async with _admin(kafka) as admin:
        [response] = await admin.describe_consumer_groups([group])
    [described] = response.to_object()["groups"]
    members: Assignment = {}
    for member in described["members"]:
        raw = member["member_assignment"]  # empty while the group rebalances
        assigned = ConsumerProtocolMemberAssignment.decode(raw).partitions() if raw else []
        members[member["member_id"][-8:]] = sorted(tp.partition for tp in assigned)
    return described["state"], members


async def _settled_assignment(
    kafka: ApacheKafka,
    group: str,
    partitions: int,
    until: Callable[[Assignment], bool],
    timeout: float = 60.0,
) -> Assignment:
    """Wait until the group is Stable with every partition assigned and `until` holds."""
    seen: tuple[str, Assignment] = ("", {})
    try:
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(KafkaError):
                    seen = await _assignment(kafka, group)
                    state, members = seen
                    owned = sorted(p for parts in members.values() for p in parts)
                    if state == "Stable" and owned == list(range(partitions)) and until(members):
                        return members
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"group {group} not as expected within {timeout}s; last seen {seen}") from None


def _generations(kafka: ApacheKafka, group: str) -> list[int]:
    """The generations `group` reached, as its coordinators logged them (every node's log): one
    per completed rebalance."""
    marker = f"Stabilized group {group} generation "
    found = set()
    for node in kafka.nodes:
        for line in node.log_path.read_text(errors="replace").splitlines():
            if marker in line:
                found.add(int(line.split(marker, 1)[1].split()[0]))
    return sorted(found)


# -- the load -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    event_id: str
    started: float  # time.monotonic(), as the sinks record
    took: float
    status: int  # 0: no HTTP answer (the connection failed, or no answer within HANG)
    retry_after: str | None


class Load:
    """SENDERS clients posting one binary-mode event per request to a Broker while `flowing`,
    each pausing `pause` between requests, MAX_EVENTS at most. A refused event is not sent again
    (every request has an id of its own), so the accepted events are exactly those answered 202.
    Event i has type kinds[i % len(kinds)]."""

    def __init__(self, url: str, prefix: str, kinds: tuple[str, ...] = ("t",), pause: float = PAUSE) -> None:
        self.url = url
        self.prefix = prefix
        self.kinds = kinds
        self.pause = pause
        self.answers: list[Answer] = []
        self._count = 0

    @contextlib.asynccontextmanager
    async def flowing(self) -> AsyncIterator[Load]:
        stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=HANG)
        async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.TaskGroup() as senders:
            for _ in range(SENDERS):
                senders.create_task(self._send(session, stop))
            try:
                yield self
            finally:
                stop.set()

    async def _send(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set() and self._count < MAX_EVENTS:
            i = self._count
            self._count += 1
            event_id = f"{self.prefix}{i}"
            headers = {
                "ce-id": event_id,
                "ce-specversion": "1.0",
                "ce-type": self.kinds[i % len(self.kinds)],
                "ce-source": "kafka-cluster-faults",
                # A key of its own: the events spread over every partition (and so every leader)
                # instead of sticking to one partition as keyless ones do.
                "ce-partitionkey": event_id,
                "content-type": "application/json",
            }
            status, retry_after = 0, None
            started = time.monotonic()
            try:
                async with session.post(self.url, data=b'{"i": %d}' % i, headers=headers) as response:
                    await response.read()
                    status, retry_after = response.status, response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.answers.append(Answer(event_id, started, time.monotonic() - started, status, retry_after))
            await asyncio.sleep(self.pause)

    def accepted(self, kind: str | None = None) -> set[str]:
        return {
            a.event_id
            for a in self.answers
            if a.status == 202 and (kind is None or self.kind_of(a.event_id) == kind)
        }

    def kind_of(self, event_id: str) -> str:
        return self.kinds[int(event_id.removeprefix(self.prefix)) % len(self.kinds)]

    def refused(self, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        return [a for a in self.answers if a.status != 202 and since <= a.started < until]

    async def steady(self, since: float, timeout: float = 90.0, run: int = 20) -> float:
        """Wait until `run` requests in a row started after `since` were answered 202; returns
        when the first of them started (service resumed then)."""
        resumed = await self.resumed(since, timeout, run)
        if resumed is None:
            statuses = Counter(a.status for a in self.answers if a.started >= since)
            raise AssertionError(f"no {run} answers 202 in a row within {timeout}s: {statuses}")
        return resumed

    async def resumed(self, since: float, timeout: float = 90.0, run: int = 20) -> float | None:
        """`steady`, or None when service did not resume within `timeout`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while True:
                    after = sorted((a for a in self.answers if a.started >= since), key=lambda a: a.started)
                    refused = [i for i, a in enumerate(after) if a.status != 202]
                    streak = after[refused[-1] + 1 :] if refused else after
                    if len(streak) >= run:
                        return streak[0].started
                    await asyncio.sleep(0.2)
        return None


def _recovery(load: Load, fault_at: float, resumed_at: float) -> dict[str, object]:
    """Figures of a fault: when the refused requests started (seconds after the fault, from
    a second before it), and when the answers were 202 in a row again."""
    starts = [a.started - fault_at for a in load.refused(fault_at - 1.0)]
    span = f"{min(starts):+.1f}..{max(starts):+.1f}s" if starts else "none"
    return {"refused_span": span, "steady_again_after_s": round(resumed_at - fault_at, 1)}


async def _until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)


async def _settle(
    name: str,
    faults: str,
    load: Load,
    sink: RecordingSink,
    *,
    before: Iterable[str] = (),
    in_flight: Callable[[str], bool] | None = None,
    **figures: object,
) -> None:
    """Wait until every accepted event reached `sink` (the Trigger taking every event), print the
    RELIABILITY line, and assert: none lost, every refusal a 503 with Retry-After, no request
    answered later than the produce timeout plus MARGIN, and each event delivered at most twice
    (and only an event `in_flight` at a fault delivered twice, when given)."""
    accepted = load.accepted() | set(before)
    await _until(lambda: accepted <= set(sink.ids()), timeout=90)
    copies = Counter(i for i in sink.ids() if i)
    refused = load.refused()
    statuses = Counter(a.status for a in refused)
    # A 503 says when to try again: Retry-After in whole seconds, as the ingress sends it.
    with_retry_after = [a for a in refused if a.status == 503 and int(a.retry_after or "0") > 0]
    lost = accepted - set(copies)
    again = {i: n for i, n in copies.items() if n > 1}
    slowest = max((a.took for a in load.answers), default=0.0)
    summary(
        name,
        faults=faults,
        sent=len(load.answers) + len(set(before)),
        accepted=len(accepted),
        error_answers=len(refused),
        statuses=dict(statuses) or "none",
        retry_after_on_503=f"{len(with_retry_after)}/{statuses[503]}",
        delivered=len(accepted & set(copies)),
        refused_but_delivered=len({a.event_id for a in refused} & set(copies)),
        lost=len(lost),
        duplicates=sum(n - 1 for n in again.values()),
        slowest_request_s=round(slowest, 2),
        **figures,
    )
    assert not lost, f"{len(lost)} accepted events never delivered: {sorted(lost)[:20]}"
    assert set(statuses) <= {503}, f"answers other than 202 and 503: {statuses}"
    assert len(with_retry_after) == statuses[503], "a 503 without Retry-After"
    assert slowest < PRODUCE_TIMEOUT + MARGIN, f"a request took {slowest:.2f}s"
    assert all(n <= 2 for n in again.values()), sorted(again.items())[:20]
    if in_flight is not None:
        stray = sorted(i for i in again if not in_flight(i))
        assert not stray, f"delivered twice though not in flight at a fault: {stray[:20]}"


async def _warm_up(cluster: KanalCluster, sink: RecordingSink, more: str = "", count: int = 10) -> list[str]:
    """Broker kc/default with Trigger `all` to `sink` (and the Triggers in `more`) applied, and
    events accepted and delivered before the fault: the Trigger is reading. Their ids."""
    await cluster.apply(BROKER + _trigger("all", sink.url) + more)
    url = cluster.broker_url(NS, "default")
    sent = await post_batch(url, [(f"w{i}", "t") for i in range(count)], "kafka-cluster-faults")
    await sink.wait_for(count, timeout=60)
    return sent


async def _kill_under_load(
    kafka: ApacheKafka, node: int, load: Load, lead: float = 2.0
) -> tuple[float, float]:
    """While `load` flows: after `lead` seconds SIGKILL `node`, wait until it is fenced and
    requests are answered 202 in a row again, then 2 s more. When it was killed, when service
    resumed."""
    await asyncio.sleep(lead)
    await asyncio.to_thread(kafka.kill, node, signal.SIGKILL)
    killed_at = time.monotonic()
    await asyncio.sleep(FENCING)
    resumed_at = await load.steady(killed_at)
    await asyncio.sleep(2.0)
    return killed_at, resumed_at


def _topic(cluster: KanalCluster) -> str:
    return broker_topic(NS, "default", cluster.env["KANAL_KAFKA_TOPIC_PREFIX"])


# -- the faults ---------------------------------------------------------------------------


async def test_partition_leader_killed(brokers: ApacheKafka, kanal: KanalCluster) -> None:
    """SIGKILL of the node leading the most of the Broker topic's partitions while four senders
    post: its partitions fail over to the other replicas; then the node comes back."""
    sink = await RecordingSink().start()
    try:
        async with asyncio.timeout(180):
            warm = await _warm_up(kanal, sink)
            topic = _topic(kanal)
            [victim, *_], leaders_before = await _by_leadership(brokers, topic)
            load = Load(kanal.broker_url(NS, "default"), "L")
            async with load.flowing():
                killed_at, resumed_at = await _kill_under_load(brokers, victim, load)
            leaders_after = await _leaders(brokers, topic)
            brokers.restart(victim, wait=False)  # it boots while the deliveries are checked
            print(f"\nleaders before {leaders_before}, after the kill of node {victim}: {leaders_after}")
            assert victim not in leaders_after.values()
            await _settle(
                "kafka-leader-kill",
                f"SIGKILL of node {victim}, {_leading(victim, leaders_before)}, RF 3, min ISR 2, 4 senders",
                load,
                sink,
                before=warm,
                **_recovery(load, killed_at, resumed_at),
            )
            # Service with the node back (its replicas catching up): events still flow.
            await asyncio.to_thread(brokers.wait_ready)
            returned = await post_batch(
                kanal.broker_url(NS, "default"), [(f"r{i}", "t") for i in range(10)], "kafka-cluster-faults"
            )
            await _until(lambda: set(returned) <= set(sink.ids()), timeout=60)
            assert set(returned) <= set(sink.ids()), "events posted after the node's return not delivered"
    finally:
        await sink.close()


async def test_two_of_three_brokers_down(brokers: ApacheKafka, kanal: KanalCluster) -> None:
    """SIGKILL of two of three nodes: with min.insync.replicas 2 nothing can be stored, so every
    request is refused with 503 within the produce timeout; one node back, service resumes by
    itself and everything accepted, before or after, is delivered."""
    sink = await RecordingSink().start()
    try:
        async with asyncio.timeout(200):
            warm = await _warm_up(kanal, sink)
            [*victims, _], _ = await _by_leadership(brokers, _topic(kanal))
            load = Load(kanal.broker_url(NS, "default"), "D")
            async with load.flowing():
                await asyncio.sleep(2.0)
                await asyncio.gather(*(asyncio.to_thread(brokers.kill, v, signal.SIGKILL) for v in victims))
                down_at = time.monotonic()
                await asyncio.sleep(10.0)
                back_at = time.monotonic()
                await asyncio.to_thread(brokers.restart, victims[0])
                registered_at = time.monotonic()
                resumed_at = await load.steady(back_at)
                await asyncio.sleep(2.0)
            brokers.restart(victims[1], wait=False)  # it boots while the deliveries are checked
            # Requests made while only one node was up: none can have been stored with acks=all.
            while_down = [a for a in load.answers if a.started >= down_at and a.started + a.took < back_at]
            print(f"\nwhile two nodes were down: {Counter(a.status for a in while_down)}")
            assert while_down and all(a.status == 503 for a in while_down), Counter(
                a.status for a in while_down
            )
            await _settle(
                "kafka-two-brokers-down",
                f"SIGKILL of nodes {victims[0]} and {victims[1]} for 10 s, then node {victims[0]} "
                "restarted; RF 3, min ISR 2",
                load,
                sink,
                before=warm,
                refused_while_down=len(while_down),
                slowest_while_down_s=round(max(a.took for a in while_down), 2),
                node_registered_after_s=round(registered_at - back_at, 1),
                steady_again_after_restart_s=round(resumed_at - back_at, 1),
            )
    finally:
        await sink.close()


def _fails_first(times: int, then: int) -> Callable[[int, Received], web.Response]:
    """A subscriber answering 500 to the first `times` requests of each event, then `then`."""
    seen: Counter[str] = Counter()

    def respond(n: int, received: Received) -> web.Response:
        event_id = received.header("ce-id") or ""
        seen[event_id] += 1
        return web.Response(status=500 if seen[event_id] <= times else then)

    return respond


async def test_group_coordinator_killed(brokers: ApacheKafka, kanal: KanalCluster) -> None:
    """SIGKILL of the node coordinating the dispatchers' group while events flow and some are
    being retried: delivery goes on, none lost, and retries keep their count: a subscriber that
    fails twice then succeeds gets each event 3 times, one that always fails gets each 4 times
    (retry 3) before the dead letter, plus at most the one attempt in flight at a move."""
    sink = await RecordingSink().start()
    flaky = await RecordingSink(_fails_first(2, then=200)).start()
    stubborn = await RecordingSink(_fails_first(MAX_EVENTS, then=500)).start()
    dead = await RecordingSink().start()
    try:
        async with asyncio.timeout(200):
            retrying = _trigger(
                "flaky", flaky.url, "{retry: 3, backoffPolicy: linear, backoffDelay: PT1S}", "flaky"
            ) + _trigger(
                "stubborn",
                stubborn.url,
                "{retry: 3, backoffPolicy: linear, backoffDelay: PT0.5S, "
                f'deadLetterSink: {{uri: "{dead.url}"}}}}',
                "stubborn",
            )
            warm = await _warm_up(kanal, sink, retrying)
            topic = _topic(kanal)
            group = dispatcher_group(topic)
            victim = await _coordinator(brokers, group)
            generations_before = _generations(brokers, group)
            kinds = ("t", "t", "flaky", "t", "t", "stubborn")
            load = Load(kanal.broker_url(NS, "default"), "C", kinds, pause=0.1)
            async with load.flowing():
                # Retries under way: each flaky and each stubborn event takes 3 s.
                killed_at, resumed_at = await _kill_under_load(brokers, victim, load, lead=5.0)
            brokers.restart(victim, wait=False)  # it boots while the deliveries are checked
            successor = await _coordinator(brokers, group)
            accepted_flaky, accepted_stubborn = load.accepted("flaky"), load.accepted("stubborn")
            await _until(
                lambda: (
                    accepted_stubborn <= set(dead.ids())
                    and all(n >= 3 for i, n in Counter(flaky.ids()).items() if i in accepted_flaky)
                    and accepted_flaky <= set(flaky.ids())
                ),
                timeout=90,
            )
            flaky_attempts = Counter(n for i, n in Counter(flaky.ids()).items() if i in accepted_flaky)
            stubborn_attempts = Counter(
                n for i, n in Counter(stubborn.ids()).items() if i in accepted_stubborn
            )
            dead_copies = Counter(i for i in dead.ids() if i in accepted_stubborn)
            generations = sorted(set(_generations(brokers, group)) - set(generations_before))
            print(f"\ncoordinator node {victim} -> node {successor}; new generations: {generations}")
            await _settle(
                "kafka-coordinator-kill",
                f"SIGKILL of node {victim}, coordinator of the dispatchers' group; a Trigger failing "
                "twice then 200 (retry 3), one always failing (retry 3, dead-letter sink)",
                load,
                sink,
                before=warm,
                rebalances=len(generations),
                **_recovery(load, killed_at, resumed_at),
                flaky_attempts_per_event=dict(sorted(flaky_attempts.items())),
                stubborn_attempts_per_event=dict(sorted(stubborn_attempts.items())),
                dead_lettered=f"{len(dead_copies)}/{len(accepted_stubborn)}",
            )
            assert successor != victim
            never_200 = sorted(i for i in accepted_flaky if Counter(flaky.ids())[i] < 3)
            assert not never_200, f"flaky events never delivered: {never_200[:20]}"
            assert max(flaky_attempts) <= 3 + 1, flaky_attempts
            not_dead = sorted(accepted_stubborn - set(dead_copies))
            assert not not_dead, f"always-failing events never dead-lettered: {not_dead[:20]}"
            # retry 3: four attempts, and one more at most for the attempt in flight at a move.
            assert min(stubborn_attempts) >= 4 and max(stubborn_attempts) <= 4 + 1, stubborn_attempts
    finally:
        for recording in (sink, flaky, stubborn, dead):
            await recording.close()


async def test_broker_frozen(brokers: ApacheKafka, kanal: KanalCluster) -> None:
    """SIGSTOP for 30 s of the node leading the most of the Broker topic's partitions, then
    SIGCONT: it is fenced, its partitions fail over, it returns as a follower; none lost."""
    sink = await RecordingSink().start()
    victim: int | None = None
    frozen = False
    try:
        async with asyncio.timeout(200):
            warm = await _warm_up(kanal, sink)
            topic = _topic(kanal)
            [victim, *_], leaders_before = await _by_leadership(brokers, topic)
            coordinator = await _coordinator(brokers, dispatcher_group(topic))
            load = Load(kanal.broker_url(NS, "default"), "F")
            async with load.flowing():
                await asyncio.sleep(2.0)
                brokers.pause(victim)
                frozen = True
                frozen_at = time.monotonic()
                await asyncio.sleep(30.0)
                brokers.resume(victim)
                frozen = False
                resumed_at = time.monotonic()
                steady_at = await load.steady(frozen_at)
                await asyncio.sleep(2.0)
            delivered_since_resume = [r for r in sink.requests if r.at > resumed_at]
            await _settle(
                "kafka-broker-frozen",
                f"SIGSTOP of node {victim} for 30 s ({_leading(victim, leaders_before)}, "
                f"{'' if coordinator == victim else 'not '}the group coordinator), then SIGCONT",
                load,
                sink,
                before=warm,
                **_recovery(load, frozen_at, steady_at),
                delivered_after_sigcont=len(delivered_since_resume),
            )
            assert delivered_since_resume, "no delivery after SIGCONT"
    finally:
        if frozen and victim is not None:
            brokers.resume(victim)
        await sink.close()


async def test_dispatcher_replicas_come_and_go(brokers: ApacheKafka, kanal: KanalCluster) -> None:
    """Three dispatchers share the Broker topic's partitions; while events flow one is killed
    with SIGKILL, then another is added: the group's assignment (DescribeGroups) shows the
    partitions move, a few rebalances settle it each time, none is lost, and only events in
    flight around the moves are delivered twice."""
    sink = await RecordingSink().start()
    try:
        async with asyncio.timeout(200):
            await kanal.start("dispatcher-2", "dispatcher-3")
            warm = await _warm_up(kanal, sink)
            group = dispatcher_group(_topic(kanal))
            partitions = int(kanal.env["KANAL_KAFKA_TOPIC_PARTITIONS"])
            before = await _settled_assignment(brokers, group, partitions, lambda m: len(m) == 3)
            load = Load(kanal.broker_url(NS, "default"), "R")
            async with load.flowing():
                await asyncio.sleep(2.0)
                killed_at = time.monotonic()
                kanal.kill("dispatcher-2", signal.SIGKILL)
                # The dead member leaves when its session times out (6 s).
                between = await _settled_assignment(
                    brokers, group, partitions, lambda m: len(m) == 2 and set(m) < set(before)
                )
                await kanal.start("dispatcher-4")
                after = await _settled_assignment(
                    brokers, group, partitions, lambda m: len(m) == 3 and len(set(m) - set(before)) == 1
                )
                settled_at = time.monotonic()
                await asyncio.sleep(2.0)
            print(f"\nassignment before: {before}\nafter the kill:    {between}\nafter the add:     {after}")
            [gone] = set(before) - set(between)
            [joined] = set(after) - set(before)
            assert after[joined], f"the new dispatcher got no partition: {after}"
            rebalances = len(_generations(brokers, group))
            # In flight at a move: delivered shortly before it and not yet committed.
            window = {a.event_id for a in load.answers if killed_at - 5.0 <= a.started <= settled_at}
            await _settle(
                "dispatcher-replicas",
                "3 dispatchers; SIGKILL of one, then a fourth started",
                load,
                sink,
                before=warm,
                in_flight=window.__contains__,
                assignment_before=before,
                after_kill=between,
                after_add=after,
                killed_member=gone,
                new_member=joined,
                group_generations=rebalances,
                accepted_around_moves=len(window),
                moves_took_s=round(settled_at - killed_at, 1),
            )
            # Each membership change costs a rebalance or two, not a storm of them.
            assert rebalances <= 10, f"{rebalances} generations of {group}"
    finally:
        await sink.close()


async def _status(cluster: KanalCluster, kind: str, name: str) -> tuple[str, str]:
    """A resource's uid and its Ready condition's status, as `kanal get` shows them."""
    result = await asyncio.to_thread(cluster.kanal, "get", kind, name, "-n", NS, "-o", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    ready = [c for c in doc.get("status", {}).get("conditions", []) if c.get("type") == "Ready"]
    return doc["metadata"]["uid"], ready[0]["status"] if ready else "Unknown"


async def test_whole_cluster_restarted(brokers: ApacheKafka, kanal: KanalCluster) -> None:
    """Every node stopped (SIGTERM) and started again on the same storage while events flow:
    Kanal, left running, reconnects by itself; its resources are intact and Ready with their
    uids; events accepted before are delivered, and so are those posted after."""
    sink = await RecordingSink().start()
    try:
        async with asyncio.timeout(200):
            warm = await _warm_up(kanal, sink)
            resources = await inventory(kanal)
            status_before = {
                kind: await _status(kanal, kind, name)
                for kind, name in (("broker", "default"), ("trigger", "all"))
            }
            load = Load(kanal.broker_url(NS, "default"), "W")
            async with load.flowing():
                await asyncio.sleep(2.0)
                stopping_at = time.monotonic()
                await asyncio.gather(
                    *(asyncio.to_thread(brokers.kill, node.node_id, signal.SIGTERM) for node in brokers.nodes)
                )
                stopped_at = time.monotonic()
                await asyncio.sleep(2.0)
                for node in brokers.nodes:
                    brokers.restart(node.node_id, wait=False)
                await asyncio.to_thread(brokers.wait_ready)
                ready_at = time.monotonic()
                # Whether or not the ingress resumes, the events it accepted are checked first.
                resumed_at = await load.resumed(ready_at, timeout=60.0)
                await asyncio.sleep(2.0)
            exited = {name: p.returncode for name, p in kanal.processes.items() if p.poll() is not None}
            assert not exited, f"Kanal processes exited: {exited}"
            status_after = {
                kind: await _status(kanal, kind, name)
                for kind, name in (("broker", "default"), ("trigger", "all"))
            }
            assert await inventory(kanal) == resources
            assert status_after == status_before, (status_before, status_after)
            assert all(ready == "True" for _, ready in status_after.values()), status_after
            posted_after = load.accepted() & {a.event_id for a in load.answers if a.started >= ready_at}
            assert posted_after
            await _settle(
                "kafka-cluster-restart",
                "all 3 nodes stopped (SIGTERM) and started again on their storage; Kanal left running",
                load,
                sink,
                before=warm,
                stop_took_s=round(stopped_at - stopping_at, 1),
                down_s=round(ready_at - stopped_at, 1),
                steady_again_after_ready_s=round(resumed_at - ready_at, 1) if resumed_at else "never",
                refused_after_restart=dict(Counter(a.status for a in load.refused(ready_at))),
                accepted_after_restart=len(posted_after),
                resources_intact=f"{len(resources)} (uids and Ready unchanged)",
            )
            assert resumed_at is not None, (
                "the ingress did not answer 20 requests in a row with 202 within 60 s of Kafka's "
                f"return:\n{kanal.tail('ingress', 10)}"
            )
    finally:
        await sink.close()
