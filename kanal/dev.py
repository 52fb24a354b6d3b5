"""`kanal dev`: the whole system on one machine, as separate processes, like a small cluster.

Starts the embedded Kafka-protocol broker (unless KANAL_KAFKA_BOOTSTRAP_SERVERS names one), then
`kanal controller`, `kanal ingress` and `kanal dispatcher` as child processes with their output
prefixed, waits until each answers /readyz, optionally applies manifests and starts
event-display sinks, and prints the URLs. Ctrl-C (or SIGTERM) stops the children in order
(ingress first, so nothing new is accepted; the broker last) and waits for them.

The controller's admin API listens on loopback (KANAL_CONTROLLER_HOST moves it), and unless a
token is configured `kanal dev` makes one for the run, in the per-user file where the CLI on this
machine finds it (`channel.control.token_files`), and Kafka's address likewise
(`kanal.local_kafka`); both files are removed when `kanal dev` stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from channel.control.token_files import local_token_path, new_token, remove_local_token, write_local_token
from channel.embedded import EmbeddedKafka
from channel.proxy import urlopen
from channel.settings import Settings
from kanal.local_kafka import local_kafka_path, remove_local_kafka, write_local_kafka

__all__ = ["run_dev"]


async def _pump(name: str, stream: asyncio.StreamReader) -> None:
    prefix = f"[{name}] "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def _spawn(
    name: str, args: list[str], env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, asyncio.Task[None]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kanal",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # Ctrl-C reaches `kanal dev` only; it stops children in order
    )
    assert process.stdout is not None
    return process, asyncio.create_task(_pump(name, process.stdout))


def _ready(url: str) -> bool:
    try:
        with urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def _wait_ready(name: str, url: str, process: asyncio.subprocess.Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode}")
        if await asyncio.to_thread(_ready, url):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{name} did not become ready at {url} within {timeout}s")


async def _stop(process: asyncio.subprocess.Process, timeout: float = 15) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def run_dev(settings: Settings, apply_paths: list[str], sinks: list[tuple[str, int]]) -> int:
    env = dict(os.environ)
    broker: EmbeddedKafka | None = None
    if settings.kafka_bootstrap_servers:  # given as a flag or in the environment: the children's too
        env["KANAL_KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    else:
        broker = EmbeddedKafka(host="127.0.0.1").start()
        env["KANAL_KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        env["KANAL_KAFKA_IDEMPOTENCE"] = "false"  # the embedded broker has no InitProducerId
        # The embedded broker answers a fetch only when its wait expires, not when records arrive.
        env.setdefault("KANAL_KAFKA_FETCH_MAX_WAIT_MS", "20")
        # The dispatcher's reads of event topics wait less: a record arriving mid-wait waits for
        # it, so that wait sets the floor of delivery latency here. Measured with one Broker:
        # p99 from ingress to subscriber at 1,000 ev/s of 13-15 ms at 10 (21 ms and up at 20), for
        # 2-3% more of a core when idle (8% at 5).
        env.setdefault("KANAL_KAFKA_EVENT_FETCH_MAX_WAIT_MS", "10")
        # It also holds a new group's first join for half the session timeout.
        env.setdefault("KANAL_KAFKA_SESSION_TIMEOUT_MS", "4000")
        print(
            f"kanal dev: embedded Kafka-protocol broker (Tansu) on {broker.bootstrap_servers}",
            flush=True,
        )
    for key, value in (
        ("KANAL_HOST", settings.host),
        ("KANAL_INGRESS_PORT", str(settings.ingress_port)),
        ("KANAL_CONTROLLER_PORT", str(settings.controller_port)),
        ("KANAL_DISPATCHER_PORT", str(settings.dispatcher_port)),
        ("KANAL_INGRESS_METRICS_PORT", str(settings.ingress_metrics_port)),
    ):
        env[key] = value
    controller_host = "127.0.0.1" if settings.controller_host is None else settings.controller_host
    settings = settings.model_copy(update={"controller_host": controller_host})
    env["KANAL_CONTROLLER_HOST"] = controller_host
    made: tuple[Path, str] | None = None  # the token made for this run, and its file
    if settings.controller_token is not None:
        env["KANAL_CONTROLLER_TOKEN"] = settings.controller_token.get_secret_value()
    if settings.controller_token_file:
        env["KANAL_CONTROLLER_TOKEN_FILE"] = settings.controller_token_file
    elif settings.controller_token is None:
        made = (local_token_path(controller_host, settings.controller_port, os.environ), new_token())
        env["KANAL_CONTROLLER_TOKEN_FILE"] = str(made[0])
    # Where `kanal describe`, `tail` and the rest on this machine find this run's Kafka.
    kafka_file = local_kafka_path(settings.public_controller_url(), os.environ)
    kafka = {"kafka_bootstrap_servers": env["KANAL_KAFKA_BOOTSTRAP_SERVERS"]}
    if "KANAL_KAFKA_IDEMPOTENCE" in env:
        kafka["kafka_idempotence"] = env["KANAL_KAFKA_IDEMPOTENCE"]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children: list[tuple[str, asyncio.subprocess.Process, asyncio.Task[None]]] = []
    base = f"http://{settings.host}"
    code = 0
    try:
        if made is not None:
            try:
                write_local_token(*made)
            except OSError as exc:
                raise RuntimeError(f"cannot write the admin API's token to {made[0]}: {exc}") from None
        if kafka_file is not None:
            try:
                write_local_kafka(kafka_file, kafka)
            except OSError as exc:
                raise RuntimeError(f"cannot write Kafka's address to {kafka_file}: {exc}") from None
        for name, port in sinks:
            proc, pump = await _spawn(
                name, ["event-display", "--port", str(port), "--host", settings.host], env
            )
            children.append((name, proc, pump))
        for name, port in (
            ("controller", settings.controller_port),
            ("dispatcher", settings.dispatcher_port),
            ("ingress", settings.ingress_port),
        ):
            proc, pump = await _spawn(name, [name], env)
            children.append((name, proc, pump))
            host = controller_host if name == "controller" else settings.host
            await _wait_ready(name, f"http://{host}:{port}/readyz", proc)
        for path in apply_paths:
            apply = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kanal", "apply", "-f", path, env=env
            )
            if await apply.wait() != 0:
                raise RuntimeError(f"applying {path} failed")
        token_line = f"  token       {made[0]}  (the CLI on this machine finds it)\n" if made else ""
        print(
            "\nkanal dev is running:\n"
            f"  ingress     {settings.public_ingress_url()}/<namespace>/<broker>\n"
            f"  controller  {settings.public_controller_url()}  (kanal get/apply/delete talk to it)\n"
            f"{token_line}"
            f"  metrics     {base}:{settings.ingress_metrics_port}/metrics (ingress),"
            f" {base}:{settings.dispatcher_port}/metrics (dispatcher)\n"
            f"  kafka       {env['KANAL_KAFKA_BOOTSTRAP_SERVERS']}\n"
            + "".join(f"  sink        {name} on {base}:{port}\n" for name, port in sinks)
            + "Press Ctrl-C to stop.",
            flush=True,
        )
        waiters = [asyncio.create_task(p.wait()) for _, p, _ in children]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *waiters], return_when=asyncio.FIRST_COMPLETED)
        if stopper not in done:
            dead = [name for name, p, _ in children if p.returncode is not None]
            print(f"kanal dev: {', '.join(dead)} exited; stopping everything", flush=True)
            code = 1
        for task in [stopper, *waiters]:
            task.cancel()
    except RuntimeError as exc:
        print(f"kanal dev: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        # Stop the ingress first (nothing new accepted), then the rest, the broker last.
        for _name, proc, pump in sorted(children, key=lambda c: c[0] != "ingress"):
            await _stop(proc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pump, 2)
        if broker is not None:
            broker.stop()
        if made is not None:
            remove_local_token(*made)
        if kafka_file is not None:
            remove_local_kafka(kafka_file, kafka)
        print("kanal dev: stopped", flush=True)
    return code
