"""`kanal source run`: run any program as an event source, the way Knative's ContainerSource and
SinkBinding do, by giving it the sink's address in its environment.

    kanal source run --sink http://127.0.0.1:8080/event-example/default -- python emit.py
    kanal source run --sink broker:event-example/default --ce-override team=blue -- ./emitter

The command gets `K_SINK` (where to POST CloudEvents) and, with `--ce-override`, `K_CE_OVERRIDES`
(`{"extensions": {...}}`: extensions the program should set on every event it sends). A
`broker:NAMESPACE/NAME` or `channel:NAMESPACE/NAME` sink is resolved through the controller.
SIGINT, SIGTERM and SIGHUP are passed on to the command (which runs in a session of its own);
`kanal` exits with the command's exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from types import FrameType

from kanal.cli.client import AdminClient

__all__ = ["add_source_parser", "resolve_sink", "source_environment"]

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def add_source_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    source = sub.add_parser("source", help="event sources")
    actions = source.add_subparsers(dest="source_command", required=True)
    run = actions.add_parser("run", help="run COMMAND with K_SINK (and K_CE_OVERRIDES) set")
    run.add_argument("--sink", required=True, help="a URL, broker:NS/NAME or channel:NS/NAME")
    run.add_argument(
        "--ce-override",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extension the command should set on its events (K_CE_OVERRIDES)",
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    return run


def resolve_sink(sink: str, client: AdminClient | None) -> str:
    kind, sep, rest = sink.partition(":")
    if kind in ("broker", "channel") and sep and "/" in rest and not rest.startswith("//"):
        if client is None:
            raise SystemExit("kanal source run: resolving a broker or channel needs the controller")
        namespace, _, name = rest.partition("/")
        doc = client.get(kind.capitalize(), namespace, name)
        url = ((doc.get("status") or {}).get("address") or {}).get("url")
        if not url:
            raise SystemExit(f"kanal source run: {kind} {namespace}/{name} has no address yet (not Ready)")
        return str(url)
    if not sink.startswith(("http://", "https://")):
        raise SystemExit(f"kanal source run: --sink must be a http(s) URL or broker:NS/NAME, not {sink!r}")
    return sink


def source_environment(sink_url: str, overrides: list[str]) -> dict[str, str]:
    env = {"K_SINK": sink_url}
    if overrides:
        extensions: dict[str, str] = {}
        for spec in overrides:
            name, sep, value = spec.partition("=")
            if not sep or not name.isalnum() or not name.islower():
                raise SystemExit(
                    f"kanal source run: --ce-override takes NAME=VALUE with a lower-case name, not {spec!r}"
                )
            extensions[name] = value
        env["K_CE_OVERRIDES"] = json.dumps({"extensions": extensions}, separators=(",", ":"))
    return env


def run_source(args: argparse.Namespace, client: AdminClient | None) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise SystemExit("kanal source run: give the command after --")
    env = dict(os.environ)
    env.update(source_environment(resolve_sink(args.sink, client), args.ce_override))
    # Handlers first: a signal that comes while the command starts is passed on once it runs.
    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is None:
            pending.append(signum)
        else:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        try:
            # A session of its own, as dumb-init does: a Ctrl-C in the terminal reaches the
            # command once (passed on by us), not twice (from the terminal and from us).
            child = subprocess.Popen(command, env=env, start_new_session=True)
        except OSError as exc:
            print(f"kanal source run: cannot start {command[0]}: {exc.strerror}", file=sys.stderr)
            return 127
        for signum in pending:
            child.send_signal(signum)
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # A command killed by a signal exits as a shell reports it: 128 + the signal's number.
    return code if code >= 0 else 128 - code
