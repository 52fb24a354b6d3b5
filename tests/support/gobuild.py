"""Go programs the tests run (helm, h2spec, Jaeger), built once with the machine's `go`.

Each is built through the Go module proxy into ``$KANAL_CACHE_DIR`` (default ``~/.cache/kanal``),
outside the work tree, as the Apache Kafka jars are: ``<name>-<version>/<name>``, with Go's module
and build caches shared by all of them in ``go/``. `go` checks every module it fetches against
the checksum database (and, in a module of ours, against its go.sum), so a build is the published
source. The machine's Go builds, never a toolchain Go would fetch for it, and without cgo.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from support.apache_kafka import cache_dir

__all__ = ["build", "go_unavailable"]


def go_unavailable(program: str, minimum: tuple[int, int] = (1, 19)) -> str | None:
    """Why `program` cannot be built here: no Go, or one older than `minimum`; None if it can."""
    go = shutil.which("go")
    if go is None:
        return f"{program} is built with Go, which is missing (make tools installs it)"
    found = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60).stdout
    if tuple(int(n) for n in re.findall(r"\d+", found)[:2]) < minimum:
        wanted = ".".join(map(str, minimum))
        return f"{program} is built with Go {wanted} or newer; {go} is {found.strip() or 'unknown'}"
    return None


def build(
    path: Path,
    target: str,
    *,
    module: Path | None = None,
    ldflags: str = "-s -w",
    timeout: float = 1800,
    failed: type[Exception] = RuntimeError,
) -> Path:
    """Build `target` (a package, with @version outside a module) with `go install` into `path`.

    `module`: the directory of a go.mod (and go.sum) that pins what it imports, read as they
    are (-mod=readonly); None: `target`'s own go.mod decides. Raises `failed` with Go's output."""
    go = shutil.which("go")
    assert go is not None, "check go_unavailable first"
    gocache = cache_dir() / "go"
    path.parent.mkdir(parents=True, exist_ok=True)
    # go install writes into GOBIN: a directory of this build's own, so that two runs building at
    # once each move a whole binary into place.
    gobin = Path(tempfile.mkdtemp(prefix="build-", dir=path.parent))
    env = {
        **os.environ,
        "GOPATH": str(gocache),
        "GOMODCACHE": str(gocache / "mod"),
        "GOCACHE": str(gocache / "build"),
        "GOBIN": str(gobin),
        "GOFLAGS": "-mod=readonly" if module is not None else "",
        "GOTOOLCHAIN": "local",  # the machine's Go, never one fetched for the build
        "CGO_ENABLED": "0",
    }
    name = target.partition("@")[0].rsplit("/", 1)[-1]
    print(f"building {name} with Go into {path} (once, it may take minutes)", file=sys.stderr)
    try:
        result = subprocess.run(
            [go, "install", "-trimpath", "-ldflags", ldflags, target],
            cwd=module or gobin, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if result.returncode != 0:
            output = result.stdout[-3000:] + result.stderr[-3000:]
            raise failed(f"go could not build {target}:\n{output}")
        (gobin / name).replace(path)
    finally:
        shutil.rmtree(gobin, ignore_errors=True)
    return path
