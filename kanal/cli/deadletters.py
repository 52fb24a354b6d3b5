"""`kanal deadletters list|redrive`: dead letters kept in a Kafka topic, shown and sent back.

A Trigger with the annotation `kanal.dev/dead-letter-topic: TOPIC` has its dead letters written
there (with `knativeerrordest`, `knativeerrorcode`, `knativeerrordata` and `kanalorigin`).

    kanal deadletters list --trigger orders -n shop [--type T] [--since 2h] [--until TIME] [-o json]
    kanal deadletters redrive --trigger orders -n shop [--type T] [--since 2h] [--dry-run]

`redrive` writes the matching events back into the Trigger's Broker, as they were first sent
(the error extensions removed), so every Trigger of that Broker that selects them gets them
again. The dead-letter topic is not changed: to redrive only once, narrow with `--since`/`--until`
(the table's TIME column is when each dead letter was written).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from channel.errors import InvalidEvent, KanalError, NotFound, Unavailable
from channel.events import CloudEvent, KafkaRecord, from_kafka_record, to_kafka_record
from channel.kafka import DEAD_LETTER_TOPIC_ANNOTATION, broker_topic, create_producer
from channel.producer import KafkaEventSink
from channel.settings import Settings
from channel.topics import RangeStart, TopicRange
from kanal.cli.client import AdminClient
from kanal.cli.progress import Progress
from kanal.cli.timespec import parse_time_ms

__all__ = ["DeadLetter", "add_deadletters_parser", "original_event"]

# Dead letters written back per confirmed send: the progress line moves this many at a time, and
# a failure says how many were confirmed before it.
REDRIVE_BATCH: Final = 500
_ERROR_EXTENSIONS = ("knativeerrordest", "knativeerrorcode", "knativeerrordata", "kanalorigin")


def add_deadletters_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    parent = sub.add_parser("deadletters", help="list or redrive dead letters kept in a Kafka topic")
    actions = parent.add_subparsers(dest="deadletters_command", required=True)
    parsers = []
    for name, text in (("list", "show dead letters"), ("redrive", "send dead letters back to the Broker")):
        p = actions.add_parser(name, help=text)
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--trigger", help="the Trigger whose dead-letter topic to read")
        where.add_argument("--topic", help="a dead-letter topic")
        p.add_argument("-n", "--namespace", default="default")
        p.add_argument("--type", dest="event_type", help="only events of this type")
        p.add_argument("--since", help="written at or after: RFC 3339 time or a duration ago (2h)")
        p.add_argument("--until", help="written before: RFC 3339 time or a duration ago")
        if name == "list":
            p.add_argument("-o", "--output", choices=["json"])
        else:
            p.add_argument("--broker", help="the Broker to send to (default: the Trigger's)")
            p.add_argument("--dry-run", action="store_true", help="show what would be sent, send nothing")
        parsers.append(p)
    return parsers


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event: CloudEvent
    partition: int
    offset: int
    timestamp_ms: int
    traceparent: bytes | None = None  # the trace the event was in when it failed

    def redrive_record(self) -> KafkaRecord:
        """The record that sends the event again as first sent, in the trace it was in."""
        record = to_kafka_record(original_event(self.event))
        if self.traceparent is not None:
            record.headers.append(("traceparent", self.traceparent))
        return record

    def row(self) -> list[str]:
        a = self.event.attributes
        when = datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return [
            a.get("id", ""),
            a.get("type", ""),
            a.get("source", ""),
            a.get("knativeerrorcode", "-"),
            a.get("knativeerrordest", ""),
            when,
            f"{self.partition}:{self.offset}",
        ]


def original_event(dead: CloudEvent) -> CloudEvent:
    """The event as it was sent, without the dead-letter extensions."""
    return CloudEvent({k: v for k, v in dead.attributes.items() if k not in _ERROR_EXTENSIONS}, dead.data)


def _trigger(client: AdminClient, namespace: str, name: str) -> dict[str, Any]:
    return client.get("Trigger", namespace, name)


async def _read(settings: Settings, topic: str, args: argparse.Namespace) -> list[DeadLetter]:
    since = parse_time_ms(args.since) if args.since else None
    until = parse_time_ms(args.until) if args.until else None
    found: list[DeadLetter] = []
    reader = TopicRange(settings, topic, RangeStart(time_ms=since), until)
    async for record in reader.records():
        try:
            event = from_kafka_record(record.key, record.value, record.headers)
        except InvalidEvent:
            continue
        if args.event_type and event.attributes.get("type") != args.event_type:
            continue
        trace = next((value for name, value in record.headers or () if name == "traceparent"), None)
        found.append(DeadLetter(event, record.partition, record.offset, record.timestamp, trace))
    found.sort(key=lambda d: (d.timestamp_ms, d.partition, d.offset))
    return found


def _table(letters: list[DeadLetter]) -> str:
    headers = ["ID", "TYPE", "SOURCE", "ERRORCODE", "ERRORDEST", "TIME", "OFFSET"]
    rows = [d.row() for d in letters]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    )


def run_deadletters(args: argparse.Namespace, settings: Settings, client: AdminClient) -> int:
    try:
        return asyncio.run(_run(args, settings, client))
    except (NotFound, Unavailable, ValueError) as exc:
        print(f"kanal deadletters: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, settings: Settings, client: AdminClient) -> int:
    trigger = _trigger(client, args.namespace, args.trigger) if args.trigger else None
    topic = args.topic
    if trigger is not None:
        topic = ((trigger.get("metadata") or {}).get("annotations") or {}).get(DEAD_LETTER_TOPIC_ANNOTATION)
        if not topic:
            raise ValueError(
                f"Trigger {args.namespace}/{args.trigger} has no {DEAD_LETTER_TOPIC_ANNOTATION} annotation"
            )
    settings.bootstrap()
    letters = await _read(settings, topic, args)
    if args.deadletters_command == "list":
        if args.output == "json":
            print(
                json.dumps(
                    [
                        {
                            "attributes": d.event.attributes,
                            "data": (d.event.data or b"").decode("utf-8", "replace"),
                            "partition": d.partition,
                            "offset": d.offset,
                            "timestamp_ms": d.timestamp_ms,
                        }
                        for d in letters
                    ],
                    indent=2,
                )
            )
        elif letters:
            print(_table(letters))
        else:
            print(f"No dead letters in {topic}.", file=sys.stderr)
        return 0
    broker = args.broker or (trigger or {}).get("spec", {}).get("broker")
    if not broker:
        raise ValueError("give --broker (or --trigger) to say where to send the dead letters")
    client.get("Broker", args.namespace, broker)  # it must exist
    target = broker_topic(args.namespace, broker, settings.kafka_topic_prefix)
    events = [original_event(d.event) for d in letters]
    verb = "would redrive" if args.dry_run else "redriving"
    for event in events:
        print(f"{verb} {event.id} ({event.attributes.get('type', '')})")
    if not args.dry_run and events:
        producer = create_producer(settings)
        await producer.start()
        bar = Progress("redriving")
        sent = 0
        try:
            sink = KafkaEventSink(producer, settings.kafka_produce_timeout)
            for start in range(0, len(letters), REDRIVE_BATCH):
                batch = letters[start : start + REDRIVE_BATCH]
                await sink.send(target, [d.redrive_record() for d in batch])
                sent += len(batch)
                bar.update(sent, len(letters))
        except KanalError as exc:
            raise Unavailable(
                f"{sent} of {len(letters)} dead letters confirmed written to Broker"
                f" {args.namespace}/{broker}, then: {exc}"
            ) from exc
        finally:
            bar.close()
            await producer.stop()
    done = "would be sent" if args.dry_run else "sent"
    print(f"{len(events)} dead letters {done} to Broker {args.namespace}/{broker}")
    return 0
