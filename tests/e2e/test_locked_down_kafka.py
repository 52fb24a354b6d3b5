"""Kanal on a locked-down Apache Kafka: SCRAM-SHA-512 over TLS and mutual TLS, with exactly the
ACLs the documentation lists (docs/security.md, *Kafka ACLs*), and one clear line when Kafka
refuses it.

One `SecureKafka` (tests/support/secure_kafka.py) serves the module. The ACLs are read from the
documentation's table, its default names mapped onto the cluster's own (each cluster has topics, a
topic prefix and a scheduler group of its own, so one test's grants never cover another's).
Through SASL_SSL each component runs as a user of its own with its column of the table only;
through mutual TLS all three run as the certificate's principal, as one Helm release does.

A wrong password, a CA file that did not sign the broker's certificate, and a missing ACL (one a
component needs at start) each make the component exit with 1 within seconds, its log holding
one line that names the cause and no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from channel.kafka import DEAD_LETTER_TOPIC_ANNOTATION, STATS_TOPIC
from support.apache_kafka import missing_tools
from support.cluster import COMPONENTS, KanalCluster
from support.kafka import apache_under_test
from support.secure_kafka import Acl, Operation, PatternType, ResourceType, SecureKafka
from support.sinks import RecordingSink

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(missing_tools()), reason=f"Apache Kafka needs {' and '.join(missing_tools())} (JDK 17, Maven)"
    ),
]

ACL_PAGE = Path(__file__).resolve().parents[2] / "docs" / "security.md"
USERS = {component: f"kanal-{component}" for component in COMPONENTS}
CERTIFICATE_PRINCIPAL = "CN=kanal"
# A refused start must end this soon (Kanal's own clients would wait 40 s on a request).
BOUND = 30.0


@pytest.fixture(scope="module")
def secure() -> Iterator[SecureKafka]:
    with SecureKafka(tuple(USERS.values())) as kafka:
        yield kafka


def _cluster(kafka: SecureKafka, workdir: Path, settings: dict[str, str]) -> KanalCluster:
    return KanalCluster(
        apache_under_test(kafka.sasl_bootstrap),
        workdir,
        kafka_channel_topic_prefix=f"c{uuid.uuid4().hex[:8]}",
        **settings,
    )


def _documented_rows() -> list[dict[str, str]]:
    """The documentation's ACL table, a dict per row keyed by its header."""
    lines = ACL_PAGE.read_text().partition("### Kafka ACLs")[2].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| resource |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)))
    assert rows, f"{ACL_PAGE} has no Kafka ACL table"
    return rows


def _names(cluster: KanalCluster) -> dict[str, str]:
    """The documentation's default names, as this cluster has them."""
    env = cluster.env
    return {
        "kanal.resources": env["KANAL_KAFKA_RESOURCES_TOPIC"],
        "kanal.resources.eventtypes": env["KANAL_KAFKA_RESOURCES_TOPIC"] + ".eventtypes",
        "kanal.ticks": env["KANAL_KAFKA_TICKS_TOPIC"],
        "kanal.attempts": env["KANAL_KAFKA_ATTEMPTS_TOPIC"],
        "kanal.stats": STATS_TOPIC,  # one fixed name, shared by every cluster
        "knative-broker.": env["KANAL_KAFKA_TOPIC_PREFIX"] + ".",
        "knative-channel.": env["KANAL_KAFKA_CHANNEL_TOPIC_PREFIX"] + ".",
        "kanal.ticks.scheduler": env["KANAL_KAFKA_TICKS_TOPIC"] + ".scheduler",
        "kanal.dispatcher.": "kanal.dispatcher.",
        "kanal.trigger.": "kanal.trigger.",
        "kanal.subscription.": "kanal.subscription.",
    }


def documented_acls(cluster: KanalCluster, principals: dict[str, str]) -> list[Acl]:
    """The documented ACLs for this cluster, each component's column granted to its principal."""
    names = _names(cluster)
    acls: dict[Acl, None] = {}
    for row in _documented_rows():
        named = re.search(r"`([^`]+)`", row["name"])
        assert named is not None, row
        if named.group(1) == DEAD_LETTER_TOPIC_ANNOTATION:
            continue  # these tests name no dead-letter topic
        for component, principal in principals.items():
            for operation in filter(None, (op.strip() for op in row[component].split(","))):
                acl = Acl(
                    principal,
                    ResourceType[row["resource"].upper()],
                    PatternType[row["pattern"].upper()],
                    names[named.group(1)],
                    Operation[operation],
                )
                acls[acl] = None
    return list(acls)


def _env(settings: dict[str, str]) -> dict[str, str]:
    return {f"KANAL_{name.upper()}": value for name, value in settings.items()}


async def _events_flow(cluster: KanalCluster) -> None:
    """A Broker and a Trigger applied, an event posted: the Trigger's subscriber gets it."""
    sink = await RecordingSink().start()
    try:
        await cluster.apply(
            f"""\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: secure}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: display, namespace: secure}}
spec:
  broker: default
  subscriber: {{uri: "{sink.url}"}}
"""
        )
        headers = {
            "Ce-Id": "over-tls",
            "Ce-Specversion": "1.0",
            "Ce-Type": "greeting",
            "Ce-Source": "test",
            "Content-Type": "application/json",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                cluster.broker_url("secure", "default"), data=b'{"msg":"hi"}', headers=headers
            ) as answer,
        ):
            assert answer.status == 202, await answer.text()
        [received] = await sink.wait_for(1, timeout=30.0)
        assert received.header("ce-id") == "over-tls" and received.body == b'{"msg":"hi"}'
    finally:
        await sink.close()


async def _refused_at_start(cluster: KanalCluster, component: str, cause: str) -> str:
    """Start `component`: it must exit 1 within BOUND seconds with one log line saying it
    stopped, which contains `cause`, and no traceback. Returns that line."""
    started = time.monotonic()
    # The start returns once the component is ready (the controller is, before its scheduler
    # is refused its group) and fails once it has exited: either way, its exit is what counts.
    with contextlib.suppress(AssertionError, TimeoutError):
        async with asyncio.timeout(BOUND):
            await cluster.start(component)
    try:
        code = await asyncio.to_thread(
            cluster.processes[component].wait, max(0.0, BOUND - (time.monotonic() - started))
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{component} still running {BOUND} s after its start:\n{cluster.tail(component)}")
    took = time.monotonic() - started
    log = cluster.log_path(component).read_text()
    assert code == 1, log
    assert "Traceback" not in log, log
    stopped = [line for line in log.splitlines() if f"kanal {component} stopped: " in line]
    assert len(stopped) == 1 and cause in stopped[0], log
    print(f"\n{component} exited 1 after {took:.1f} s: {stopped[0].partition(' ERROR ')[2]}")
    return stopped[0]


async def test_sasl_scram_sha_512_over_tls_with_each_components_acls(
    secure: SecureKafka, tmp_path: Path
) -> None:
    cluster = _cluster(secure, tmp_path, secure.settings_sasl(USERS["controller"]))
    await secure.add_acls(documented_acls(cluster, USERS))
    try:
        for component in COMPONENTS:
            cluster.env.update(_env(secure.settings_sasl(USERS[component])))
            await cluster.start(component)
        await _events_flow(cluster)
    finally:
        cluster.stop()


async def test_mutual_tls_with_the_certificates_principal(secure: SecureKafka, tmp_path: Path) -> None:
    cluster = _cluster(secure, tmp_path, secure.settings_mtls())
    await secure.add_acls(documented_acls(cluster, dict.fromkeys(COMPONENTS, CERTIFICATE_PRINCIPAL)))
    try:
        await cluster.start()
        await _events_flow(cluster)
    finally:
        cluster.stop()


async def test_a_wrong_password_is_one_line(secure: SecureKafka, tmp_path: Path) -> None:
    cluster = _cluster(secure, tmp_path, secure.settings_sasl(USERS["ingress"], password="not-it"))
    try:
        await _refused_at_start(
            cluster,
            "ingress",
            f"cannot connect to Kafka at {secure.sasl_bootstrap} as user {USERS['ingress']}: "
            "authentication failed",
        )
    finally:
        cluster.stop()


async def test_an_untrusted_broker_certificate_is_one_line(secure: SecureKafka, tmp_path: Path) -> None:
    cluster = _cluster(secure, tmp_path, secure.settings_mtls(cafile=secure.untrusted_ca.certfile))
    try:
        await _refused_at_start(
            cluster,
            "dispatcher",
            f"cannot connect to Kafka at {secure.ssl_bootstrap}: TLS certificate verify failed",
        )
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    ("component", "resource", "name", "operation", "cause"),
    [
        pytest.param(
            "controller",
            ResourceType.GROUP,
            "kanal.ticks.scheduler",
            Operation.READ,
            "not authorized to access consumer group {}",
            id="controller-scheduler-group",
        ),
        # READ is what gives DESCRIBE here, and without DESCRIBE the topic cannot even be seen.
        pytest.param(
            "ingress",
            ResourceType.TOPIC,
            "kanal.resources",
            Operation.READ,
            "not authorized to describe topic {}",
            id="ingress-resources-topic",
        ),
        pytest.param(
            "dispatcher",
            ResourceType.TOPIC,
            "kanal.attempts",
            Operation.CREATE,
            "not authorized to create topic {}",
            id="dispatcher-attempts-topic",
        ),
    ],
)
async def test_a_missing_acl_is_one_line(
    secure: SecureKafka,
    tmp_path: Path,
    component: str,
    resource: ResourceType,
    name: str,
    operation: Operation,
    cause: str,
) -> None:
    cluster = _cluster(secure, tmp_path, secure.settings_sasl(USERS[component]))
    acls = documented_acls(cluster, {component: USERS[component]})
    missing = next(
        acl
        for acl in acls
        if (acl.resource, acl.name, acl.operation) == (resource, _names(cluster)[name], operation)
    )
    await secure.add_acls([acl for acl in acls if acl != missing])
    try:
        await _refused_at_start(cluster, component, cause.format(missing.name))
    finally:
        cluster.stop()
