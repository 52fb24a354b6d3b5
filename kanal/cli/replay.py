"""`kanal replay trigger NAME -n NS --from TIME|OFFSET [--to TIME] [--dry-run]`.

Resolves the Trigger and its Broker through the controller, then runs the replay in this
process (it reads the Broker's topic, so it needs KANAL_KAFKA_BOOTSTRAP_SERVERS): see
`dispatcher.replay`. Like `kanal dispatcher`, the command loads the dispatcher's code lazily.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from channel.errors import NotFound, Unavailable
from channel.settings import Settings
from channel.topics import RangeStart
from dispatcher.replay import ReplaySummary, replay_plan, run_replay
from kanal.cli.client import AdminClient
from kanal.cli.timespec import parse_offsets, parse_time_ms

__all__ = ["parse_start", "progress_bar", "run_replay_command"]


def parse_start(text: str) -> RangeStart:
    offsets = parse_offsets(text)
    if isinstance(offsets, int):
        return RangeStart(offset=offsets)
    if offsets is not None:
        return RangeStart(offsets=offsets)
    return RangeStart(time_ms=parse_time_ms(text))


def progress_bar(done: int, total: int | None, width: int = 30) -> str:
    if not total:
        return f"replayed {done} records"
    filled = min(width, width * done // total)
    return f"replayed {done}/{total} [{'#' * filled}{'.' * (width - filled)}] {100 * done // total}%"


def run_replay_command(args: argparse.Namespace, settings: Settings, client: AdminClient) -> int:
    try:
        start = parse_start(args.start)
        until = parse_time_ms(args.until) if args.until else None
    except ValueError as exc:
        print(f"kanal replay: --from/--to: {exc}", file=sys.stderr)
        return 2
    trigger: dict[str, Any] = client.get("Trigger", args.namespace, args.name)
    broker = client.get("Broker", args.namespace, str((trigger.get("spec") or {}).get("broker", "")))
    settings.bootstrap()
    interactive = sys.stderr.isatty()

    def show(summary: ReplaySummary) -> None:
        line = progress_bar(summary.scanned, summary.total)
        print(
            ("\r" + line) if interactive else line,
            end="" if interactive else "\n",
            file=sys.stderr,
            flush=True,
        )

    try:
        plan = replay_plan(settings, trigger, broker)
        summary = asyncio.run(
            run_replay(
                settings,
                plan,
                start,
                until,
                dry_run=args.dry_run,
                concurrency=args.concurrency,
                progress=show,
            )
        )
    except (NotFound, Unavailable, ValueError) as exc:  # ValueError: a bad HTTP(S)_PROXY
        print(f"kanal replay: {exc}", file=sys.stderr)
        return 1
    if interactive:
        print(file=sys.stderr)
    prefix = "dry run: would deliver" if args.dry_run else "replayed to"
    print(f"{prefix} Trigger {args.namespace}/{args.name}: {summary.line()}")
    return 0
