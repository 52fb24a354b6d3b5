"""helm (v3), built once from the Go module proxy, and Kanal's chart rendered and linted with it.

The release is pinned here (VERSION) and built by `go install
helm.sh/helm/v3/cmd/helm@vVERSION` into ``$KANAL_CACHE_DIR`` (``helm-<version>/helm``;
support.gobuild). The first run fetches and builds it (several minutes on two cores); later runs
find it there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from support.apache_kafka import cache_dir
from support.gobuild import build, go_unavailable

__all__ = [
    "CHART",
    "VERSION",
    "GoMissing",
    "HelmFailed",
    "HelmUnavailable",
    "binary",
    "lint",
    "template",
    "unavailable",
]

VERSION = "3.21.4"  # the newest approved helm v3 release
_GO = (1, 26)  # the Go its go.mod asks for
# The Kubernetes version helm assumes when it is given none (`helm template`'s Capabilities, the
# deprecation checks of `helm lint`): that of the client-go it is built with (v0.36.2 for helm
# 3.21.4), as helm's own release build sets it; Go's defaults would say 1.20.
_KUBERNETES = ("1", "36")
CHART = Path(__file__).resolve().parents[2] / "charts" / "kanal"
_PACKAGE = "helm.sh/helm/v3"


class HelmUnavailable(RuntimeError):
    """helm could not be built (the message has Go's output)."""


class GoMissing(HelmUnavailable):
    """helm is not built yet, and there is no Go to build it (or only one too old)."""


class HelmFailed(RuntimeError):
    """helm ran and refused (the message has its command line and what it printed)."""


def _path() -> Path:
    return cache_dir() / f"helm-{VERSION}" / "helm"


def unavailable() -> str | None:
    """Why helm can be neither found nor built here (no Go, or one too old); None if it can."""
    if _path().exists():
        return None
    return go_unavailable(f"helm {VERSION}", _GO)


def binary() -> Path:
    """The helm command, built the first time."""
    path = _path()
    if path.exists():
        return path
    why = unavailable()
    if why is not None:
        raise GoMissing(why)
    ldflags = " ".join(
        [
            "-s -w",
            f"-X {_PACKAGE}/internal/version.version=v{VERSION}",
            *(f"-X {_PACKAGE}/pkg/{package}.k8sVersion{part}={number}"
              for package in ("chartutil", "lint/rules")
              for part, number in zip(("Major", "Minor"), _KUBERNETES, strict=True)),
        ]
    )  # fmt: skip
    return build(path, f"{_PACKAGE}/cmd/helm@v{VERSION}", ldflags=ldflags, failed=HelmUnavailable)


def _run(args: Sequence[str], *, timeout: float = 120) -> str:
    command = [str(binary()), *args]
    # helm keeps its own state (repositories, plugins, cache) under these; none is needed here,
    # and the user's own must neither be read nor written.
    home = cache_dir() / f"helm-{VERSION}" / "home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": os.devnull,  # nothing here talks to a cluster
    }
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if result.returncode != 0:
        raise HelmFailed(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def _value_args(values: Sequence[Path], set_json: Sequence[str]) -> list[str]:
    args = []
    for path in values:
        args += ["--values", str(path)]
    for assignment in set_json:  # path=JSON: numbers stay numbers (--set makes 0.5 a string)
        args += ["--set-json", assignment]
    return args


def lint(
    values: Sequence[Path] = (), *, set_json: Sequence[str] = (), chart: Path = CHART, strict: bool = True
) -> str:
    """`helm lint` (--strict: warnings fail too); what it printed. Raises HelmFailed."""
    args = ["lint", str(chart), *_value_args(values, set_json)]
    return _run([*args, "--strict"] if strict else args)


def template(
    values: Sequence[Path] = (),
    *,
    set_json: Sequence[str] = (),
    release: str = "kanal",
    namespace: str = "kanal",
    kube_version: str | None = None,
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """`helm template` of the chart, hooks included: each manifest it renders, in its order.
    Raises HelmFailed (a values file the schema refuses, a kubeVersion the chart does not admit)."""
    args = ["template", release, str(chart), "--namespace", namespace, *_value_args(values, set_json)]
    if kube_version is not None:
        args += ["--kube-version", kube_version]
    return [doc for doc in yaml.safe_load_all(_run(args)) if doc]


if __name__ == "__main__":  # PYTHONPATH=tests python -m support.helm ARGS: the helm built here
    print(binary(), file=sys.stderr)
    os.execv(binary(), [str(binary()), *sys.argv[1:]])
