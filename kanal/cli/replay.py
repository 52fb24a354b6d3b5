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
from kanal.cli.progress import Progress
from kanal.cli.timespec import parse_offsets, parse_time_ms

__all__ = ["parse_start", "run_replay_command"]


def parse_start(text: str) -> RangeStart:
    offsets = parse_offsets(text)
    if isinstance(offsets, int):
        return RangeStart(offset=offsets)
    if offsets is not None:
        return RangeStart(offsets=offsets)
    return RangeStart(time_ms=parse_time_ms(text))


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
    bar = Progress("dry run" if args.dry_run else "replaying")

    def show(summary: ReplaySummary) -> None:
        bar.update(summary.scanned, summary.total)

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
    finally:
        bar.close()
    prefix = "dry run: would deliver" if args.dry_run else "replayed to"
    print(f"{prefix} Trigger {args.namespace}/{args.name}: {summary.line()}")
    return 0
