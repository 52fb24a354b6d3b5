"""Apache Kafka on loopback without Docker: the broker's jars from Maven Central, run with `java`.

`deploy/kafka/pom.xml` pins the version. Its jars are resolved once with Maven into
``$KANAL_CACHE_DIR`` (default ``~/.cache/kanal``), outside the work tree, so a second run
downloads nothing. Each node runs ``kafka.Kafka`` in KRaft combined mode (broker and
controller in one JVM) on free loopback ports, its storage formatted first, with a bounded heap
so three nodes and Kanal fit a 2-core machine.

The settings come from the compose file's ``kafka`` service, its ``KAFKA_*`` variables mapped to
properties the way the ``apache/kafka`` image maps them, so the configuration a user starts with
``docker compose up`` is the one the tests run. Only what names a place (node id, listeners,
quorum voters, log directory) is set here, and for a cluster of three the replication factors
of Kafka's internal topics and ``min.insync.replicas``.

``python -m support.apache_kafka`` (``make kafka``) starts one node on 127.0.0.1:9092 for a
person who wants to try Kanal on Apache Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml
from aiokafka.errors import KafkaError

from channel.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "deploy" / "kafka" / "pom.xml"
COMPOSE = REPO / "docker-compose.yml"
# Each JVM's heap: three brokers and Kanal fit in a few GiB with room for the page cache.
HEAP = "-Xmx512m"

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or the broker's jars could not be resolved."""


def pom_property(name: str, pom: Path = POM) -> str:
    found = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", pom.read_text())
    if found is None:
        raise ValueError(f"{pom} has no <{name}>")
    return found.group(1).strip()


def kafka_version() -> str:
    """The Apache Kafka version Kanal is tested against (the one place it is stated)."""
    return pom_property("kafka.version")


def compat_version() -> str:
    """The newest 3.x release, for the compatibility smoke."""
    return pom_property("kafka.compat.version")


def missing_tools() -> list[str]:
    """What of `java` and `mvn` this machine lacks."""
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def cache_dir() -> Path:
    return Path(os.environ.get("KANAL_CACHE_DIR") or Path.home() / ".cache" / "kanal")


def classpath(version: str | None = None) -> str:
    """The broker's classpath, resolving its jars with Maven the first time."""
    version = version or kafka_version()
    libs = cache_dir() / f"kafka-{version}" / "libs"
    done = libs / ".resolved"
    if not done.exists():
        missing = missing_tools()
        if missing:
            raise KafkaUnavailable(
                f"Apache Kafka needs {' and '.join(missing)} (e.g. apt-get install "
                "openjdk-17-jre-headless maven)"
            )
        print(f"resolving Apache Kafka {version} with Maven into {libs} (once)", file=sys.stderr)
        shutil.rmtree(libs, ignore_errors=True)
        result = subprocess.run(
            [
                "mvn", "-q", "-B", "-f", str(POM),
                f"-Dmaven.repo.local={cache_dir() / 'm2'}",
                f"-Dkafka.version={version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )  # fmt: skip
        if result.returncode != 0:
            output = result.stdout[-3000:] + result.stderr[-3000:]
            raise KafkaUnavailable(f"mvn could not resolve Apache Kafka {version}:\n{output}")
        done.write_text(version)
    return str(libs / "*")


def compose_properties(compose: Path = COMPOSE) -> dict[str, str]:
    """The compose file's `kafka` service environment as broker properties, mapped as the
    apache/kafka image maps them: drop `KAFKA_`, then `___` → `-`, `__` → `_`, `_` → `.`,
    lower case."""
    environment = yaml.safe_load(compose.read_text())["services"]["kafka"]["environment"]
    properties = {}
    for name, value in environment.items():
        if not name.startswith("KAFKA_"):
            continue
        key = name.removeprefix("KAFKA_").replace("___", "\0").replace("__", "\1").replace("_", ".")
        properties[key.replace("\0", "-").replace("\1", "_").lower()] = str(value)
    return properties


def compose_image_tag(compose: Path = COMPOSE) -> str:
    image = str(yaml.safe_load(compose.read_text())["services"]["kafka"]["image"])
    return image.rpartition(":")[2]


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass
class KafkaNode:
    """One KRaft combined-mode node: a `java` process, its ports and its log directory."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def tail(self, lines: int = 30) -> str:
        with suppress(FileNotFoundError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class ApacheKafka:
    """Apache Kafka on loopback: one node, or a cluster of `nodes` with replication.

    A context manager; `kill`, `pause`/`resume` and `restart` act on one node with real signals
    for the fault tests. The log directories live under `workdir` (a temporary directory by
    default) and survive a node's restart.
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        version: str | None = None,
        workdir: Path | None = None,
        port: int | None = None,
        properties: dict[str, str] | None = None,
    ) -> None:
        self.version = version or kafka_version()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kanal-kafka-"))
        self.cluster_id = _cluster_id()
        self.nodes = [
            KafkaNode(
                node_id=index + 1,
                port=port if (port and index == 0) else free_port(),
                controller_port=free_port(),
                directory=self.workdir / f"node-{index + 1}",
            )
            for index in range(nodes)
        ]
        self.properties = compose_properties()
        if nodes > 1:
            self.properties.update(
                {
                    "offsets.topic.replication.factor": "3",
                    "transaction.state.log.replication.factor": "3",
                    "transaction.state.log.min.isr": "2",
                    "default.replication.factor": "3",
                    "min.insync.replicas": "2",
                }
            )
        self.properties.update(properties or {})
        self._last_error: BaseException | None = None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def pid(self) -> int | None:
        """The first node's process id (the only one of a single-node Kafka)."""
        return self.nodes[0].pid

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def _server_properties(self, node: KafkaNode) -> Path:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        properties = dict(self.properties)
        properties.update(
            {
                "node.id": str(node.node_id),
                "process.roles": "broker,controller",
                "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
                "controller.quorum.voters": voters,
                "log.dirs": str(node.directory / "data"),
            }
        )
        path = node.directory / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in sorted(properties.items())))
        return path

    def _java(self, node: KafkaNode, *args: str) -> list[str]:
        log4j = node.directory / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        return [
            "java",
            "-Xms128m",
            HEAP,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={node.directory}",
            "-cp",
            classpath(self.version),
            *args,
        ]

    def _format(self, node: KafkaNode) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        config = self._server_properties(node)
        storage_tool = ("kafka.tools.StorageTool", "format", "--ignore-formatted")
        result = subprocess.run(
            # `=`: a cluster id may begin with "-", which would read as an option.
            self._java(node, *storage_tool, f"--cluster-id={self.cluster_id}", f"--config={config}"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            output = result.stdout + result.stderr
            raise RuntimeError(f"formatting node {node.node_id}'s storage failed:\n{output}")

    def _launch(self, node: KafkaNode) -> None:
        config = node.directory / "server.properties"
        with open(node.log_path, "ab") as log:
            node.process = subprocess.Popen(
                self._java(node, "kafka.Kafka", str(config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start(self, timeout: float = 90.0) -> ApacheKafka:
        try:
            for node in self.nodes:
                self._format(node)
            for node in self.nodes:
                self._launch(node)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 90.0, nodes: list[KafkaNode] | None = None) -> None:
        """Wait until every running node (or `nodes`) is a registered broker of the cluster."""
        waiting = nodes or [node for node in self.nodes if node.process is not None]
        deadline = time.monotonic() + timeout
        while True:
            for node in waiting:
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(
                        f"Kafka node {node.node_id} exited ({node.process.returncode}):\n{node.tail()}"
                    )
            registered = self._registered_brokers(waiting[0])
            if registered >= {node.node_id for node in waiting}:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"-- node {node.node_id}:\n{node.tail()}" for node in waiting)
                raise RuntimeError(
                    f"Kafka not ready within {timeout}s (registered {registered}, last error "
                    f"{self._last_error!r}):\n{tails}"
                )
            time.sleep(0.2)

    def _registered_brokers(self, node: KafkaNode) -> set[int]:
        try:
            socket.create_connection(("127.0.0.1", node.port), 0.5).close()
        except OSError:
            return set()  # not listening yet
        # In a thread of its own: the caller may be a coroutine, on a running event loop.
        with ThreadPoolExecutor(1) as pool:
            try:
                return pool.submit(asyncio.run, self._brokers(node)).result()
            except (KafkaError, OSError, TimeoutError) as error:
                self._last_error = error
                return set()

    async def _brokers(self, node: KafkaNode) -> set[int]:
        """The ids of the brokers registered, as `node` reports them (a subclass whose listeners
        need credentials asks with them)."""
        return await _describe_cluster(node.address)

    def kill(self, node_id: int, sig: int = signal.SIGKILL, *, grace: float = 30.0) -> None:
        """Signal one node; after SIGKILL or SIGTERM, wait for it to exit. A node told to stop
        gets `grace` seconds, then SIGKILL, as an orchestrator does: a broker that is also a
        controller waits for a quorum before it exits, which never comes when every node stops."""
        node = self.node(node_id)
        assert node.process is not None and node.process.poll() is None, f"node {node_id} is not running"
        node.process.send_signal(sig)
        if sig == signal.SIGTERM:
            try:
                node.process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                node.process.kill()
        if sig in (signal.SIGKILL, signal.SIGTERM):
            node.process.wait(60)

    def pause(self, node_id: int) -> None:
        self.kill(node_id, signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        self.kill(node_id, signal.SIGCONT)

    def restart(self, node_id: int, *, wait: bool = True, timeout: float = 90.0) -> None:
        """Start a stopped node again on its ports and storage."""
        node = self.node(node_id)
        assert node.process is None or node.process.poll() is not None, f"node {node_id} is running"
        self._launch(node)
        if wait:
            self.wait_ready(timeout, [node])

    def stop(self) -> None:
        for node in self.nodes:
            process = node.process
            if process is None or process.poll() is not None:
                continue
            with suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for node in self.nodes:
            process = node.process
            if process is None:
                continue
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def running(self) -> Iterator[KafkaNode]:
        return (node for node in self.nodes if node.pid is not None)


async def _describe_cluster(bootstrap: str) -> set[int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        described = await admin.describe_cluster()
        return {int(broker["node_id"]) for broker in described["brokers"]}
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="make kafka", description="Apache Kafka on loopback (KRaft, one node) until Ctrl-C"
    )
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--version", default=None, help=f"Kafka version (default {kafka_version()})")
    parser.add_argument("--data", type=Path, default=None, help="log directory (default: temporary)")
    args = parser.parse_args()
    kafka = ApacheKafka(version=args.version, port=args.port, workdir=args.data)
    kafka.start()
    print(
        f"Apache Kafka {kafka.version} on {kafka.bootstrap_servers} (logs: {kafka.nodes[0].log_path})\n"
        f"  KANAL_KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers} "
        "kanal dev --apply examples/getting-started",
        flush=True,
    )
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop and kafka.nodes[0].pid is not None:
            time.sleep(0.5)
    finally:
        kafka.stop()


if __name__ == "__main__":
    main()
