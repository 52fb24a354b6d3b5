"""h2spec, the HTTP/2 conformance suite (Go), built once and run against a server on loopback.

The build is pinned by deploy/h2spec/go.mod and go.sum (h2spec's release and every module it
imports) and made with the machine's `go` through the Go module proxy, into
``$KANAL_CACHE_DIR`` (``h2spec-<version>/h2spec``; support.gobuild).
The first run fetches and builds it (about half a minute); later runs find it there.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from support.apache_kafka import cache_dir
from support.gobuild import build, go_unavailable

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
    if (why := go_unavailable(f"h2spec {release}")) is not None:
        raise GoMissing(why)
    ldflags = f"-X main.VERSION={release}"
    return build(
        path, f"{_PACKAGE}/cmd/h2spec", module=MODULE, ldflags=ldflags, timeout=900, failed=H2specUnavailable
    )


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
