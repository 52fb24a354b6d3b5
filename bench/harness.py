"""Shared plumbing for the benchmarks: the embedded broker, Kanal processes, wrk, peak RSS.

Everything runs on loopback and is bounded in time; every process started here is stopped
when the `Bench` context exits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from channel.embedded import EmbeddedKafka, free_port  # noqa: E402

# As `kanal dev` sets them: the embedded broker answers a fetch when its wait expires, not when
# a record arrives, so the dispatcher's event reads wait less than the other reads.
EMBEDDED_FETCH_WAIT_MS = 20
EVENT_FETCH_WAIT_MS = 10


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


def wrk(url: str, *, seconds: int = 10, connections: int = 64, body_bytes: int = 1024) -> dict[str, float]:
    """Run wrk -t1 with the binary-mode CloudEvent script; requests/s and non-2xx count."""
    env = dict(os.environ, BODY_BYTES=str(body_bytes))
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


class Bench:
    """An embedded broker plus Kanal components as processes, all stopped on exit."""

    def __init__(self) -> None:
        self.kafka = EmbeddedKafka()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {"ingress": free_port(), "controller": free_port(), "dispatcher": free_port()}
        self.env: dict[str, str] = {}
        # Peak RSS (VmHWM, MiB) of every process stopped so far, read just before it was stopped.
        self.peaks: dict[str, float] = {}

    def __enter__(self) -> Bench:
        self.kafka.start()
        self.env = dict(
            os.environ,
            KANAL_KAFKA_BOOTSTRAP_SERVERS=self.kafka.bootstrap_servers,
            KANAL_KAFKA_IDEMPOTENCE="false",
            # As `kanal dev` does: the embedded broker answers a fetch only when its wait expires.
            KANAL_KAFKA_FETCH_MAX_WAIT_MS=str(EMBEDDED_FETCH_WAIT_MS),
            KANAL_KAFKA_EVENT_FETCH_MAX_WAIT_MS=str(EVENT_FETCH_WAIT_MS),
            KANAL_HOST="127.0.0.1",
            KANAL_INGRESS_PORT=str(self.ports["ingress"]),
            KANAL_CONTROLLER_PORT=str(self.ports["controller"]),
            KANAL_DISPATCHER_PORT=str(self.ports["dispatcher"]),
            KANAL_LOG_LEVEL="WARNING",
            KANAL_KAFKA_RESOURCES_TOPIC=f"kanal.resources.{uuid.uuid4().hex[:8]}",
        )
        return self

    def start(self, name: str, *args: str, ready: str | None = None) -> subprocess.Popen[bytes]:
        command = (
            [sys.executable, "-m", "channel.cli.main", name, *args]
            if not args or args[0] != "--raw"
            else list(args[1:])
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
            headers={"Content-Type": "application/json"},
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
