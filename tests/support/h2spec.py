"""h2spec, the HTTP/2 conformance suite (Go), built once and run against a server on loopback.

The build is pinned by deploy/h2spec/go.mod and go.sum (h2spec's release and every module it
imports) and made with the machine's `go` through the Go module proxy, into
``$KANAL_CACHE_DIR`` (default ``~/.cache/kanal``), outside the work tree, as the Apache Kafka
jars are: ``h2spec-<version>/h2spec``, with Go's module and build caches beside it in ``go/``.
The first run fetches and builds it (about half a minute); later runs find it there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from support.apache_kafka import cache_dir

__all__ = ["MODULE", "Case", "GoMissing", "H2specUnavailable", "binary", "run", "version"]

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "deploy" / "h2spec"
_PACKAGE = "github.com/summerwind/h2spec"
_NOT_PASSED = ("failure", "error", "skipped")  # a skipped case is no pass either


class H2specUnavailable(RuntimeError):
    """h2spec could not be built (the message has Go's output)."""


class GoMissing(H2specUnavailable):
    """h2spec is not built yet, and there is no Go to build it."""


@dataclass(frozen=True)
class Case:
    """One h2spec test case: its id as h2spec takes it on the command line (http2/3.5/2),
    what it sends, and the failure (None if it passed)."""

    id: str
    title: str
    failure: str | None


def version() -> str:
    """The h2spec release go.mod pins (2.2.1)."""
    match = re.search(rf"^require {re.escape(_PACKAGE)} v([\w.]+)", (MODULE / "go.mod").read_text(), re.M)
    assert match is not None, "deploy/h2spec/go.mod names no h2spec release"
    return match.group(1)


def binary() -> Path:
    """The h2spec command, built the first time."""
    release = version()
    path = cache_dir() / f"h2spec-{release}" / "h2spec"
    if path.exists():
        return path
    go = shutil.which("go")
    if go is None:
        raise GoMissing("h2spec is built with Go, which is missing (make tools installs it)")
    gocache = cache_dir() / "go"
    env = {
        **os.environ,
        "GOPATH": str(gocache),
        "GOMODCACHE": str(gocache / "mod"),
        "GOCACHE": str(gocache / "build"),
        "GOFLAGS": "-mod=readonly",  # exactly what go.mod and go.sum say
    }
    print(f"building h2spec {release} with Go into {path} (once)", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"h2spec.{os.getpid()}")
    result = subprocess.run(
        [
            go, "build", "-o", str(partial),
            "-ldflags", f"-X main.VERSION={release}",
            f"{_PACKAGE}/cmd/h2spec",
        ],
        cwd=MODULE, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr[-3000:]
        raise H2specUnavailable(f"go could not build h2spec {release}:\n{output}")
    partial.replace(path)  # whole or not at all, if two runs build at once
    return path


def run(port: int, report: Path, *, tls: bool = False, timeout: int = 2) -> list[Case]:
    """Every case, strict ones included (-S), against 127.0.0.1:port; each case waits `timeout`
    seconds at the most for an answer."""
    command = [str(binary()), "-h", "127.0.0.1", "-p", str(port), "-S", "-o", str(timeout)]
    command += ["-j", str(report)]
    if tls:
        command += ["--tls", "--insecure"]
    # 146 cases; most take milliseconds, one that waits in vain takes `timeout`.
    subprocess.run(command, capture_output=True, timeout=300, check=False)
    return cases(report)


def cases(report: Path) -> list[Case]:
    """The cases of h2spec's JUnit report, with the ids h2spec gives them (the package, then
    the case's number within it)."""
    found = []
    for suite in ElementTree.parse(report).getroot().iter("testsuite"):
        package = suite.get("package", "")
        for number, case in enumerate(suite.iter("testcase"), start=1):
            problem = next((case.find(kind) for kind in _NOT_PASSED if case.find(kind) is not None), None)
            failure = None if problem is None else (problem.text or problem.tag).strip()
            found.append(Case(f"{package}/{number}", case.get("classname", ""), failure))
    return found
