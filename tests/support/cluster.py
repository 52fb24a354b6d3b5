"""Kanal as a user runs it: real `kanal controller|ingress|dispatcher` processes on loopback.

Each cluster gets its own ports, resources topic and topic prefix, so clusters in one test
session never see each other, and its own admin API token, in a file named by
KANAL_CONTROLLER_TOKEN_FILE for the controller and the CLI alike, as a user of bare processes
sets it up. Processes can be killed with real signals and started again.
A name with a suffix, ``dispatcher-2``, is another replica of that component: a process of its
own with its own port and log, stopped with the rest.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from channel.embedded import free_port
from support.kafka import KafkaUnderTest

COMPONENTS = ("controller", "dispatcher", "ingress")


class KanalCluster:
    def __init__(self, kafka: KafkaUnderTest, workdir: Path, **settings: str) -> None:
        self.workdir = workdir
        self.ports = {name: free_port() for name in COMPONENTS}
        # The ingress serves /metrics on a port of its own (each ingress replica too); the
        # controller and the dispatcher on theirs.
        self.metrics_ports = {"ingress": free_port()}
        self.env = dict(os.environ)
        self.env.update(kafka.env())
        self.env.update(
            {
                "KANAL_HOST": "127.0.0.1",
                "KANAL_INGRESS_PORT": str(self.ports["ingress"]),
                "KANAL_CONTROLLER_PORT": str(self.ports["controller"]),
                "KANAL_DISPATCHER_PORT": str(self.ports["dispatcher"]),
                "KANAL_INGRESS_METRICS_PORT": str(self.metrics_ports["ingress"]),
                "KANAL_KAFKA_RESOURCES_TOPIC": f"kanal.resources.{uuid.uuid4().hex[:10]}",
                "KANAL_KAFKA_ATTEMPTS_TOPIC": f"kanal.attempts.{uuid.uuid4().hex[:10]}",
                "KANAL_KAFKA_TICKS_TOPIC": f"kanal.ticks.{uuid.uuid4().hex[:10]}",
                "KANAL_KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}",
                "KANAL_KAFKA_TOPIC_PARTITIONS": "3",
                "KANAL_DISPATCHER_COMMIT_INTERVAL": "0.2",
            }
        )
        self.token = secrets.token_urlsafe(32)
        self.token_file = workdir / f"controller-{uuid.uuid4().hex[:8]}.token"
        self.token_file.write_text(self.token + "\n")
        self.token_file.chmod(0o600)
        self.env["KANAL_CONTROLLER_TOKEN_FILE"] = str(self.token_file)
        self.env.update({f"KANAL_{k.upper()}": v for k, v in settings.items()})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._generation = 0
        self._own_settings: dict[str, dict[str, str]] = {}  # per process, kept across restarts

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingress']}"

    def metrics_port(self, name: str) -> int:
        """The port where process `name` serves /metrics."""
        return self.metrics_ports.get(name, self.ports[name])

    def metric(self, sample: str, name: str = "ingress") -> float:
        """One sample's value on process `name`'s /metrics: `sample` as exposed, with its labels
        (`kanal_x_total{kind="broker",name="b",namespace="ns"}`); 0 when it is not there."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port(name)}/metrics", timeout=5
        ) as response:
            lines = response.read().decode().splitlines()
        found = [line for line in lines if line.startswith(sample + " ")]
        return float(found[0].split()[-1]) if found else 0.0

    def broker_url(self, namespace: str, name: str) -> str:
        return f"{self.ingress_url}/{namespace}/{name}"

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    async def start(self, *names: str, **settings: str) -> None:
        """Start processes (`ingress-2`: another ingress replica); `settings` (snake_case) are
        theirs alone, and stay theirs when they are started again."""
        for name in names or COMPONENTS:
            component, _, replica = name.partition("-")
            env = self.env
            if replica:  # another replica of `component`: a port of its own
                port = self.ports.setdefault(name, free_port())
                env = dict(self.env, **{f"KANAL_{component.upper()}_PORT": str(port)})
                if component == "ingress":
                    env["KANAL_INGRESS_METRICS_PORT"] = str(self.metrics_ports.setdefault(name, free_port()))
            if settings:
                self._own_settings[name] = {f"KANAL_{k.upper()}": v for k, v in settings.items()}
            if name in self._own_settings:
                env = dict(env, **self._own_settings[name])
            self._generation += 1
            log = open(self.log_path(name), "ab")  # noqa: SIM115  (owned by the process)
            log.write(f"\n==== start {self._generation} ====\n".encode())
            log.flush()
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "kanal", component],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            await self.wait_ready(name)

    async def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        url = f"http://127.0.0.1:{self.ports[name]}/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise AssertionError(f"{name} exited ({process.returncode}):\n{self.tail(name)}")
            if await asyncio.to_thread(_ok, url):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name} not ready within {timeout}s:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        process.send_signal(sig)
        process.wait(30)

    def stop(self) -> None:
        # The ingress first, the controller last; replicas with their component.
        order = ("ingress", "dispatcher", "controller")
        for name in sorted(self.processes, key=lambda name: order.index(name.partition("-")[0])):
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kanal(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the `kanal` CLI against this cluster, as a user would."""
        return subprocess.run(
            [sys.executable, "-m", "kanal", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    async def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        result = await asyncio.to_thread(self.kanal, "apply", "-f", "-", stdin=manifest)
        assert result.returncode == 0, f"apply failed: {result.stderr}"
        return result


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def signal_name(sig: int) -> str:
    return signal.Signals(sig).name
