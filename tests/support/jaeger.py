"""Jaeger (v2, built on the OpenTelemetry Collector), the real trace collector the tracing tests
send Kanal's spans to: OTLP/HTTP in, an in-memory store, and its query API out.

The release is pinned by deploy/jaeger/go.mod and go.sum and built once with the machine's Go
(support.gobuild) into ``$KANAL_CACHE_DIR/jaeger-<version>/jaeger``: the first build takes
several minutes on two cores. Each `Jaeger` runs with a configuration file written for it, every
port a free one on loopback (Jaeger's own defaults are fixed ports), and is stopped with SIGTERM.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channel.embedded import free_port
from support.apache_kafka import cache_dir
from support.gobuild import build, go_unavailable

__all__ = ["MODULE", "Jaeger", "JaegerUnavailable", "Span", "binary", "built", "unavailable", "version"]

MODULE = Path(__file__).resolve().parents[2] / "deploy" / "jaeger"
_PACKAGE = "github.com/jaegertracing/jaeger"
_GO = (1, 24)  # the Go its go.mod asks for


class JaegerUnavailable(RuntimeError):
    """Jaeger could not be built, or did not start (the message says why)."""


def version() -> str:
    """The Jaeger release deploy/jaeger/go.mod pins (1.75.0)."""
    match = re.search(rf"^\s*{re.escape(_PACKAGE)} v([\w.]+)", (MODULE / "go.mod").read_text(), re.M)
    assert match is not None, "deploy/jaeger/go.mod names no Jaeger release"
    return match.group(1)


def _path() -> Path:
    return cache_dir() / f"jaeger-{version()}" / "jaeger"


def built() -> bool:
    """Whether Jaeger is built already."""
    return _path().exists()


def unavailable() -> str | None:
    """Why Jaeger can be neither found nor built here (no Go, or one too old); None if it can."""
    if _path().exists():
        return None
    return go_unavailable(f"Jaeger {version()}", _GO)


def binary() -> Path:
    """The jaeger command, built the first time."""
    path = _path()
    if path.exists():
        return path
    if (why := unavailable()) is not None:
        raise JaegerUnavailable(why)
    return build(path, f"{_PACKAGE}/cmd/jaeger", module=MODULE, failed=JaegerUnavailable)


@dataclass(frozen=True)
class Span:
    """A span as Jaeger's query API returns it: ids in hex, its parent (None for a root), the
    spans it links to, its service and its attributes (span.kind among them)."""

    span_id: str
    name: str
    service: str
    parent: str | None
    links: tuple[str, ...]
    tags: dict[str, Any] = field(hash=False)
    start: int = 0  # microseconds since the epoch

    @property
    def kind(self) -> str | None:
        kind = self.tags.get("span.kind")
        return str(kind) if kind is not None else None


def _config(otlp: int, query: int, grpc: int, health: int, metrics: int) -> str:
    return f"""
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics}
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false  # else it sends its own spans to localhost:4317, whoever is there
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


class Jaeger:
    """A running Jaeger: `otlp_url` takes spans, `trace` reads one trace back. Use as a context
    manager (or `start` and `stop`)."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._otlp, self._query = free_port(), free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "jaeger.log"

    @property
    def otlp_url(self) -> str:
        """The OTLP/HTTP endpoint (KANAL_TRACING_ENDPOINT)."""
        return f"http://127.0.0.1:{self._otlp}"

    def start(self, timeout: float = 30.0) -> Jaeger:
        assert self._process is None, "this Jaeger was started already"
        config = self._workdir / "jaeger.yaml"
        config.write_text(_config(self._otlp, self._query, free_port(), free_port(), free_port()))
        command = [str(binary()), "--config", str(config)]
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise JaegerUnavailable(f"jaeger exited {self._process.returncode}:\n{self.log.read_text()}")
            try:
                self._get("/api/services")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        raise JaegerUnavailable(f"jaeger did not answer within {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> Jaeger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self._query}{path}", timeout=5) as response:
            return json.load(response)

    def trace(self, trace_id: str) -> list[Span]:
        """The spans Jaeger holds of trace `trace_id` (32 hex digits), oldest first; none yet: []."""
        try:
            found = self._get(f"/api/traces/{trace_id}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        spans = []
        for data in found.get("data") or ():
            processes = data.get("processes", {})
            for span in data.get("spans", ()):
                references = span.get("references") or ()
                parent = next((r["spanID"] for r in references if r["refType"] == "CHILD_OF"), None)
                links = tuple(r["spanID"] for r in references if r["refType"] == "FOLLOWS_FROM")
                spans.append(
                    Span(
                        span_id=span["spanID"],
                        name=span["operationName"],
                        service=processes.get(span.get("processID"), {}).get("serviceName", ""),
                        parent=parent,
                        links=links,
                        tags={tag["key"]: tag["value"] for tag in span.get("tags") or ()},
                        start=span.get("startTime", 0),
                    )
                )
        return sorted(spans, key=lambda s: s.start)
