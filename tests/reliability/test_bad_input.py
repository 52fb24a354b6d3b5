"""Bad input against real processes: raw HTTP abuse of the ingress (malformed requests, huge
headers, invalid UTF-8, truncated and trickled bodies, wrong content types, deep JSON, random
bytes) never gets a 500 or a crash, leaves memory bounded and stores nothing from a cut-off
request; invalid manifests given to `kanal apply` (hypothesis mutations of valid documents of
every kind) are refused with a message and apply nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel.resources.manifests import parse_resource
from channel.resources.model import Resource
from support.cluster import KanalCluster
from support.inventory import inventory
from support.kafka import KafkaUnderTest
from support.report import summary
from support.sinks import RecordingSink

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

BROKER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: fuzz}
"""


@pytest.fixture
async def watcher() -> AsyncIterator[RecordingSink]:
    """Receives every event stored on the fuzz Broker, to see what the ingress let through."""
    sink = await RecordingSink().start()
    try:
        yield sink
    finally:
        await sink.close()


@pytest.fixture
async def cluster(
    kafka: KafkaUnderTest, tmp_path: Path, watcher: RecordingSink
) -> AsyncIterator[KanalCluster]:
    cluster = KanalCluster(kafka, tmp_path)
    try:
        await cluster.start()
        await cluster.apply(
            BROKER
            + f"""
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: watch, namespace: fuzz}}
spec:
  broker: default
  subscriber: {{uri: "{watcher.url}"}}
"""
        )
        yield cluster
    finally:
        cluster.stop()


async def _raw(
    port: int, data: bytes, *, trickle: float = 0.0, trickle_from: int = 0, read_timeout: float = 10.0
) -> int | None:
    """Send raw bytes (from `trickle_from` on, 8 bytes every `trickle` seconds); the response
    status, or None if the server closed without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        try:
            if trickle:
                writer.write(data[:trickle_from])
                for i in range(trickle_from, len(data), 8):
                    writer.write(data[i : i + 8])
                    await writer.drain()
                    await asyncio.sleep(trickle)
            else:
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the server stopped reading (e.g. headers too large); its answer may follow
        try:
            line = await asyncio.wait_for(reader.readline(), read_timeout)
        except (TimeoutError, ConnectionError):
            return None
        match = re.match(rb"HTTP/1\.[01] (\d{3})", line)
        return int(match.group(1)) if match else None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def _request(path: str, headers: dict[str, bytes], body: bytes, method: str = "POST") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    for name, value in headers.items():
        head += name.encode() + b": " + value + b"\r\n"
    if "Content-Length" not in headers:
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    return head + b"Connection: close\r\n\r\n" + body


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


BINARY = {
    "ce-id": b"1",
    "ce-specversion": b"1.0",
    "ce-type": b"t",
    "ce-source": b"s",
    "Content-Type": b"application/json",
}


async def test_hand_written_abuse_never_gets_a_500(cluster: KanalCluster, watcher: RecordingSink) -> None:
    port = cluster.ports["ingress"]
    pid = cluster.processes["ingress"].pid
    path = "/fuzz/default"
    rss_before = _rss_kib(pid)
    deep = b"[" * 100_000 + b"]" * 100_000
    big_batch = json.dumps(
        [{"specversion": "1.0", "id": f"big{i}", "type": "big", "source": "s"} for i in range(3000)]
    ).encode()
    structured = b'{"specversion": "1.0", "id": "x", "type": "t", "source": "s", "data": {"k": 1}}'
    slow_body = _request(path, {**BINARY, "ce-id": b"slow-body"}, b'{"trickled": "' + b"x" * 100 + b'"}')
    cases: dict[str, tuple[bytes, dict[str, float]]] = {
        "malformed request line": (b"GARBAGE\r\n\r\n", {}),
        "bad method token": (b"P\x00ST /fuzz/default HTTP/1.1\r\nHost: x\r\n\r\n", {}),
        "bad HTTP version": (b"POST /fuzz/default HTTP/9.9\r\nHost: x\r\n\r\n", {}),
        "header without colon": (b"POST /fuzz/default HTTP/1.1\r\nHost x\r\nce-id 1\r\n\r\n", {}),
        "100 KiB header": (_request(path, {**BINARY, "ce-big": b"x" * 100 * 1024}, b"{}"), {}),
        "200 KB header": (_request(path, {**BINARY, "ce-big": b"x" * 200_000}, b"{}"), {}),
        "many headers": (_request(path, {**BINARY, **{f"ce-x{i}": b"v" for i in range(3000)}}, b"{}"), {}),
        "invalid UTF-8 header": (_request(path, {**BINARY, "ce-id": b"\xff\xfe\xfd"}, b"{}"), {}),
        "invalid UTF-8 extension": (_request(path, {**BINARY, "ce-ext": b"a\xc3\x28b"}, b"{}"), {}),
        "bad percent escape": (_request(path, {**BINARY, "ce-source": b"%zz%"}, b"{}"), {}),
        "percent-encoded invalid UTF-8": (_request(path, {**BINARY, "ce-type": b"%ff%fe"}, b"{}"), {}),
        "unknown structured format": (
            _request(path, {"Content-Type": b"application/cloudevents+xml"}, b"<e/>"),
            {},
        ),
        "structured, body not JSON": (
            _request(path, {"Content-Type": b"application/cloudevents+json"}, b"{not json"),
            {},
        ),
        "structured, invalid UTF-8": (
            _request(path, {"Content-Type": b"application/cloudevents+json"}, b'{"id": "\xff"}'),
            {},
        ),
        "text/plain without ce- headers": (_request(path, {"Content-Type": b"text/plain"}, b"hello"), {}),
        "form without ce- headers": (
            _request(path, {"Content-Type": b"application/x-www-form-urlencoded"}, b"a=1&b=2"),
            {},
        ),
        "garbage content type": (_request(path, {**BINARY, "Content-Type": b";;;==\x01"}, b"{}"), {}),
        "no content type, structured body": (_request(path, {}, structured), {}),
        "batch of garbage": (
            _request(path, {"Content-Type": b"application/cloudevents-batch+json"}, b"[1, {]"),
            {},
        ),
        "batch, not an array": (
            _request(path, {"Content-Type": b"application/cloudevents-batch+json"}, structured),
            {},
        ),
        "deep JSON structured": (
            _request(path, {"Content-Type": b"application/cloudevents+json"}, deep),
            {},
        ),
        "deep JSON batch": (
            _request(path, {"Content-Type": b"application/cloudevents-batch+json"}, deep),
            {},
        ),
        "deep JSON in binary data": (_request(path, {**BINARY, "ce-id": b"deep-data"}, deep[:400_000]), {}),
        "huge batch (2.7 MB)": (
            _request(
                path,
                {"Content-Type": b"application/cloudevents-batch+json"},
                json.dumps(
                    [{"specversion": "1.0", "id": str(i), "type": "t", "source": "s"} for i in range(40_000)]
                ).encode(),
            ),
            {},
        ),
        "batch of 3,000 events": (
            _request(path, {"Content-Type": b"application/cloudevents-batch+json"}, big_batch),
            {},
        ),
        "negative content length": (_request(path, {**BINARY, "Content-Length": b"-5"}, b"{}"), {}),
        "two content lengths": (
            _request(path, {**BINARY, "Content-Length": b"2", "content-length": b"7"}, b"{}"),
            {},
        ),
        "chunked garbage": (
            _request(path, {**BINARY, "Transfer-Encoding": b"chunked", "Content-Length": b"0"}, b"zz\r\n"),
            {},
        ),
        "slow headers (slowloris)": (_request(path, BINARY, b"{}"), {"trickle": 0.05}),
        "slow body": (slow_body, {"trickle": 0.05, "trickle_from": slow_body.index(b"\r\n\r\n") + 4}),
    }
    results: dict[str, int | None] = {}
    for name, (data, options) in cases.items():
        results[name] = await _raw(port, data, **options)  # type: ignore[arg-type]

    # Truncated bodies: promise more than is sent, then close. The client never got an answer,
    # and a cut-off body is not the event that was sent: nothing of it may be stored.
    truncated = {
        "trunc-binary": _request(
            path, {**BINARY, "ce-id": b"trunc-binary", "Content-Length": b"1000"}, b'{"cut": "'
        ),
        "trunc-structured": _request(
            path,
            {"Content-Type": b"application/cloudevents+json", "Content-Length": b"1000"},
            b'{"specversion": "1.0", "id": "trunc-structured", "type": "t", "source": "s"}',
        ),
        "trunc-batch": _request(
            path,
            {"Content-Type": b"application/cloudevents-batch+json", "Content-Length": b"1000"},
            b'[{"specversion": "1.0", "id": "trunc-batch", "type": "t", "source": "s"}]',
        ),
    }
    for data in truncated.values():
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()

    # Fifty trickling connections do not stop a normal request.
    slow = [
        asyncio.create_task(_raw(port, _request(path, BINARY, b"{}"), trickle=0.2, read_timeout=30))
        for _ in range(50)
    ]
    await asyncio.sleep(0.5)
    normal = await _raw(port, _request(path, {**BINARY, "ce-id": b"normal"}, b"{}"), read_timeout=5)
    for task in slow:
        task.cancel()
    await asyncio.gather(*slow, return_exceptions=True)

    # The limit is decided from Content-Length, before the body: the answer comes without it.
    early = await _raw(
        port,
        _request(
            path, {"Content-Type": b"application/cloudevents-batch+json", "Content-Length": b"5000000"}, b""
        ),
        read_timeout=5,
    )
    alive = cluster.processes["ingress"].poll() is None
    healthz = await _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    growth_mib = (_rss_kib(pid) - rss_before) / 1024

    # A sentinel sent last: once it (and the normal event) arrived, anything stored earlier has too.
    sentinel = await _raw(port, _request(path, {**BINARY, "ce-id": b"sentinel"}, b"{}"), read_timeout=5)
    deadline = asyncio.get_running_loop().time() + 30
    while not {"normal", "sentinel"} <= set(watcher.ids()) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)
    leaked = sorted(set(truncated) & set(watcher.ids()))
    for received in watcher.requests:
        if received.header("ce-id") in truncated:
            print(f"\nstored from a truncated request: {received.header('ce-id')} body={received.body!r}")
    fives = {name: status for name, status in results.items() if status is not None and status >= 500}
    summary(
        "ingress-abuse",
        faults=f"{len(cases) + len(truncated) + 2} kinds of malformed, huge, slow and truncated requests",
        sent=len(cases) + len(truncated) + 52,
        delivered="n/a",
        dead_lettered=0,
        lost=0,
        duplicates=0,
        responses_5xx=len(fives),
        crashed=int(not alive),
        rss_growth_mib=round(growth_mib, 1),
        truncated_stored=len(leaked),
    )
    print("statuses: " + ", ".join(f"{name}={status}" for name, status in results.items()))

    assert alive and healthz == 200
    assert not fives, fives
    assert growth_mib < 150, f"ingress RSS grew {growth_mib:.0f} MiB"
    assert normal == 202 and sentinel == 202
    assert {"normal", "sentinel"} <= set(watcher.ids())
    assert results["invalid UTF-8 header"] == 400
    assert results["percent-encoded invalid UTF-8"] == 400
    assert results["unknown structured format"] == 415
    assert results["structured, body not JSON"] == 400
    assert results["text/plain without ce- headers"] == 400
    assert results["batch of garbage"] == 400
    assert results["batch, not an array"] == 400
    assert results["deep JSON structured"] in (400, 413)
    assert results["deep JSON batch"] in (400, 413)
    assert results["deep JSON in binary data"] == 202  # data is opaque bytes in binary mode
    assert results["batch of 3,000 events"] == 202
    # 2.7 MB sent whole: 413, or a reset that ate the answer (the server stops reading).
    assert results["huge batch (2.7 MB)"] in (413, None)
    assert early == 413
    assert results["slow headers (slowloris)"] == 202
    assert results["slow body"] == 202
    assert not leaked, f"events from truncated requests were stored and delivered: {leaked}"


_header_names = st.sampled_from(["ce-id", "ce-type", "ce-source", "ce-specversion", "Content-Type", "ce-x"])
_header_values = st.binary(max_size=64).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headers=st.dictionaries(_header_names, _header_values, max_size=6),
    body=st.binary(max_size=512),
    path=st.sampled_from(["/fuzz/default", "/fuzz/missing", "/", "/a/b/c", "/channels/fuzz/x", "/%ff"]),
    method=st.sampled_from(["POST", "PUT", "GET", "OPTIONS", "DELETE"]),
)
async def test_random_requests_never_get_a_500(
    cluster: KanalCluster, headers: dict[str, bytes], body: bytes, path: str, method: str
) -> None:
    status = await _raw(cluster.ports["ingress"], _request(path, headers, body, method))
    assert status is None or status < 500, (method, path, headers, body)
    assert cluster.processes["ingress"].poll() is None


# Valid documents of every kind; the fuzz below breaks one field of a copy in a way that is
# always invalid, so every mutated file must be refused as a whole.
TEMPLATES: dict[str, dict[str, Any]] = {
    "Broker": {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "b", "namespace": "fuzz"},
        "spec": {"delivery": {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.2S"}},
    },
    "Trigger": {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "t", "namespace": "fuzz"},
        "spec": {
            "broker": "default",
            "filter": {"attributes": {"type": "greeting"}},
            "subscriber": {"uri": "http://127.0.0.1:9/"},
            "delivery": {"retry": 1, "deadLetterSink": {"uri": "http://127.0.0.1:9/dls"}},
        },
    },
    "Channel": {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Channel",
        "metadata": {"name": "c", "namespace": "fuzz"},
    },
    "Subscription": {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Subscription",
        "metadata": {"name": "s", "namespace": "fuzz"},
        "spec": {
            "channel": {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel", "name": "c"},
            "subscriber": {"uri": "http://127.0.0.1:9/"},
        },
    },
    "PingSource": {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": "p", "namespace": "fuzz"},
        "spec": {"schedule": "*/5 * * * *", "data": "{}", "sink": {"uri": "http://127.0.0.1:9/"}},
    },
}

# Per kind: fields whose value must be a string, an object or an integer, and fields required.
STRINGS = {
    "Broker": ["metadata.name", "metadata.namespace", "spec.delivery.backoffPolicy"],
    "Trigger": ["metadata.name", "spec.broker", "spec.subscriber.uri", "spec.filter.attributes.type"],
    "Channel": ["metadata.name", "metadata.namespace"],
    "Subscription": ["metadata.name", "spec.channel.name", "spec.subscriber.uri"],
    "PingSource": ["metadata.name", "spec.schedule", "spec.sink.uri"],
}
OBJECTS = {
    "Broker": ["metadata", "spec.delivery"],
    "Trigger": ["metadata", "spec", "spec.subscriber", "spec.filter", "spec.delivery.deadLetterSink"],
    "Channel": ["metadata"],
    "Subscription": ["spec", "spec.channel", "spec.subscriber"],
    "PingSource": ["spec", "spec.sink"],
}
INTEGERS = {"Broker": ["spec.delivery.retry"], "Trigger": ["spec.delivery.retry"]}
REQUIRED = {
    "Broker": ["metadata.name"],
    "Trigger": ["metadata.name", "spec.broker", "spec.subscriber"],
    "Channel": ["metadata.name"],
    "Subscription": ["spec.channel", "spec.subscriber"],
    "PingSource": ["spec.schedule", "spec.sink"],
}


def _not_a_name(text: str) -> bool:
    return re.search(r"[^a-z0-9.-]", text) is not None


# Strings that are never valid where they go.
BAD_STRINGS = {
    "metadata.name": st.text(min_size=1, max_size=20).filter(
        lambda s: re.search(r"[^a-z0-9.-]", s) is not None
    ),
    "spec.subscriber.uri": st.sampled_from(["not a uri", "relative/path", "://x", "http//x", ""]),
    "spec.delivery.backoffDelay": st.sampled_from(["soon", "5", "P", "PT", "PT1X", "1 second"]),
    "spec.delivery.backoffPolicy": st.sampled_from(["random", "LINEAR", ""]),
    "spec.schedule": st.sampled_from(["every minute", "* * *", "61 * * * *", ""]),
}

_wrong_for_string = st.one_of(
    st.integers(), st.lists(st.integers(), min_size=1, max_size=3), st.just({"a": 1})
)
_wrong_for_object = st.one_of(
    st.integers(), st.text(min_size=1, max_size=10), st.lists(st.integers(), min_size=1, max_size=3)
)
_wrong_for_integer = st.one_of(st.just("many"), st.just([1]), st.just({"n": 1}), st.integers(max_value=-1))


@st.composite
def _broken(draw: st.DrawFn, kind: str) -> tuple[str, dict[str, Any]]:
    """A copy of the kind's template with one field broken; (what was done, the document)."""
    doc = json.loads(json.dumps(TEMPLATES[kind]))
    how = draw(st.sampled_from(["type", "missing", "bad string", "unknown field"]))
    if how == "type":
        kinds = [("s", p) for p in STRINGS[kind]] + [("o", p) for p in OBJECTS[kind]]
        kinds += [("i", p) for p in INTEGERS.get(kind, [])]
        shape, field = draw(st.sampled_from(kinds))
        strategy = {"s": _wrong_for_string, "o": _wrong_for_object, "i": _wrong_for_integer}[shape]
        value: Any = draw(strategy)
        _set(doc, field, value)
    elif how == "missing":
        field = draw(st.sampled_from(REQUIRED[kind]))
        _delete(doc, field)
        value = None
    elif how == "bad string":
        candidates = [f for f in BAD_STRINGS if _has(doc, f)]
        field = draw(st.sampled_from(candidates))
        value = draw(BAD_STRINGS[field])
        _set(doc, field, value)
    else:
        field = "spec.zz" + draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True))
        value = 1
        doc.setdefault("spec", {})
        _set(doc, field, value)
    return f"{kind}: {how} {field}={value!r}", doc


def _has(doc: dict[str, Any], path: str) -> bool:
    node: Any = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value


def _delete(doc: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    del node[last]


async def test_invalid_manifests_apply_nothing(cluster: KanalCluster) -> None:
    """`kanal apply -f` of a file whose first document is valid and a later one broken: a non-zero
    exit, a message naming the problem and no traceback, and not even the valid document stored."""
    for kind, template in TEMPLATES.items():  # the templates themselves are valid
        assert isinstance(parse_resource(template), Resource), kind
    before = await inventory(cluster)
    tried: list[str] = []
    failures: list[str] = []

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        data=st.data(), kind=st.sampled_from(sorted(TEMPLATES)), valid_kind=st.sampled_from(sorted(TEMPLATES))
    )
    def fuzz(data: st.DataObject, kind: str, valid_kind: str) -> None:
        what, bad = data.draw(_broken(kind))
        valid = json.loads(json.dumps(TEMPLATES[valid_kind]))
        valid["metadata"]["name"] = f"keeper-{len(tried)}"
        manifest = json.dumps(valid) + "\n---\n" + json.dumps(bad) + "\n"
        tried.append(what)
        result = cluster.kanal("apply", "-f", "-", stdin=manifest)
        if result.returncode == 0 or "Traceback" in result.stderr or not result.stderr.strip():
            failures.append(
                f"{what}: exit {result.returncode}, stdout {result.stdout!r}, stderr {result.stderr!r}"
            )

    await asyncio.to_thread(fuzz)
    after = await inventory(cluster)
    summary(
        "apply-fuzz",
        faults=f"{len(tried)} invalid documents (hypothesis) after a valid one",
        sent=len(tried),
        delivered="n/a",
        dead_lettered=0,
        lost=0,
        duplicates=0,
        accepted=len(failures),
        half_applied=len(after - before),
    )
    assert not failures, "\n".join(failures)
    assert after == before, f"stored although the file was refused: {sorted(after - before)}"


async def test_non_string_api_version_or_kind_is_refused(cluster: KanalCluster) -> None:
    """A document whose apiVersion or kind is not a string is not "another Kubernetes kind" to skip:
    it is not a Kubernetes object at all, so the file is refused (kubectl refuses it too)."""
    before = await inventory(cluster)
    accepted: list[str] = []
    for field, value in [
        ("apiVersion", 5),
        ("apiVersion", ["eventing.knative.dev/v1"]),
        ("kind", None),
        ("kind", ["Trigger"]),
    ]:
        valid = json.loads(json.dumps(TEMPLATES["Broker"]))
        bad = json.loads(json.dumps(TEMPLATES["Trigger"]))
        bad[field] = value
        manifest = json.dumps(valid) + "\n---\n" + json.dumps(bad)
        result = await asyncio.to_thread(cluster.kanal, "apply", "-f", "-", stdin=manifest)
        assert "Traceback" not in result.stderr
        if result.returncode == 0:
            accepted.append(f"{field}={value!r}: {result.stdout.strip()} / {result.stderr.strip()}")
            await asyncio.to_thread(cluster.kanal, "delete", "brokers", "b", "-n", "fuzz")
    after = await inventory(cluster)
    assert not accepted, "\n".join(accepted)
    assert after == before
