"""`kanal tail broker|channel NAME`: the events of a Broker or Channel as they are accepted.

Reads the Broker's or Channel's topic directly: every partition assigned (no consumer group, so no
Trigger is made, nothing is committed and the dispatchers never see this reader), starting at the
end of the log, or at its beginning with `--from-beginning`, or at a time with `--since`. Each
event is printed in event-display's format, or as one JSON line (`-o json`: the CloudEvents JSON
format) for other tools. `--filter` keeps only the events a CESQL expression is true for, with
the same engine Triggers use. Records that are not CloudEvents are skipped. It runs until Ctrl-C,
or until `--max-events` events were printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any, Final, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from channel.errors import InvalidEvent, ValidationError
from channel.events import CloudEvent, from_kafka_record, to_structured_json
from channel.filters import Filter, compile_trigger_filter
from channel.kafka import broker_topic, channel_topic, client_options, create_admin
from channel.settings import Settings
from kanal.cli.client import AdminClient
from kanal.cli.display import format_event
from kanal.cli.timespec import parse_time_ms

__all__ = ["add_tail_parser", "event_filter", "format_line", "run_tail"]

# Records asked for per fetch: what one turn of the loop holds at the most.
MAX_RECORDS: Final = 500


def add_tail_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "tail",
        help="print a Broker's or Channel's events as they are accepted (read from Kafka)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=["broker", "channel"], help="broker or channel")
    parser.add_argument("name")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument(
        "--filter", metavar="CESQL", help="print only the events this CESQL expression is true for"
    )
    parser.add_argument("-o", "--output", choices=["display", "json"], default="display")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the beginning of the log")
    start.add_argument("--since", metavar="TIME", help="start at a time: RFC 3339 or a duration ago (10m)")
    parser.add_argument("--max-events", type=int, metavar="N", help="stop after printing N events")
    return parser


def event_filter(expression: str | None) -> Filter | None:
    """The compiled `--filter`; ValidationError with every problem when it is not valid CESQL."""
    if expression is None:
        return None
    return compile_trigger_filter(None, [{"cesql": expression}], path="--filter")


def format_line(event: CloudEvent, output: str) -> str:
    if output == "json":
        return to_structured_json(event).decode()
    return format_event(event)


def run_tail(args: argparse.Namespace, settings: Settings, client: AdminClient) -> int:
    try:
        matcher = event_filter(args.filter)
        since = parse_time_ms(args.since) if args.since else None
    except ValidationError as exc:
        for problem in exc.problems:
            print(f"kanal tail: {problem}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"kanal tail: --since: {exc}", file=sys.stderr)
        return 2
    if args.max_events is not None and args.max_events < 1:
        print("kanal tail: --max-events must be at least 1", file=sys.stderr)
        return 2
    kind = "Broker" if args.kind == "broker" else "Channel"
    client.get(kind, args.namespace, args.name)  # a clear error for a resource that is not there
    try:
        settings.bootstrap()
    except ValueError as exc:
        print(f"kanal tail: {exc}", file=sys.stderr)
        return 1
    if kind == "Broker":
        topic = broker_topic(args.namespace, args.name, settings.kafka_topic_prefix)
    else:
        topic = channel_topic(args.namespace, args.name, settings.kafka_channel_topic_prefix)
    start = "beginning" if args.from_beginning else since
    try:
        asyncio.run(_tail(settings, topic, start, matcher, args.output, args.max_events, sys.stdout))
    except KafkaError as exc:
        print(f"kanal tail: {exc}", file=sys.stderr)
        return 1
    return 0


async def _partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    admin = create_admin(settings)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = sorted(int(p["partition"]) for p in described.get("partitions") or ())
    if described.get("error_code") or not numbers:
        raise KafkaError(f"topic {topic} is not there (is the resource Ready?)")
    return [TopicPartition(topic, n) for n in numbers]


async def _tail(
    settings: Settings,
    topic: str,
    start: str | int | None,
    matcher: Filter | None,
    output: str,
    max_events: int | None,
    out: TextIO,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    partitions = await _partitions(settings, topic)
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await _seek(consumer, partitions, start)
        where = "its end" if start is None else "its beginning" if start == "beginning" else "--since"
        print(
            f"kanal tail: reading {topic} ({len(partitions)} partitions) from {where}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        printed = 0
        while not stop.is_set():
            fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([fetch, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch
                break
            for records in fetch.result().values():
                for record in records:
                    event = _event(record, start if isinstance(start, int) else None)
                    if event is None or (matcher is not None and not matcher.matches(event.attributes)):
                        continue
                    print(format_line(event, output), file=out, flush=True)
                    printed += 1
                    if max_events is not None and printed >= max_events:
                        return
    finally:
        await consumer.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _seek(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], start: str | int | None
) -> None:
    if start == "beginning":
        await consumer.seek_to_beginning(*partitions)
    elif isinstance(start, int):
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, start))
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            at = found.get(tp)
            consumer.seek(tp, at.offset if at is not None else ends[tp])
    else:
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, ends[tp])
    for tp in partitions:  # positions settled before the first fetch
        await consumer.position(tp)


def _event(record: ConsumerRecord[Any, Any], since: int | None) -> CloudEvent | None:
    """The event a record carries, or None: not a CloudEvent, or (some brokers seek to before a
    time) older than `--since`."""
    if since is not None and record.timestamp < since:
        return None
    try:
        return from_kafka_record(record.key, record.value, record.headers or ())
    except InvalidEvent:
        return None
