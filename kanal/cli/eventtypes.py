"""`kanal get eventtypes` and `kanal describe eventtype NAME`: the event types Kanal has seen
flowing through each Broker and Channel, as Knative's EventType resources.

The ingress replicas write their counts to the EventType topic (`ingress.eventtypes`); this
reads that topic from its beginning to its end as it was when reading began, merges every
replica's records into one EventType each (`channel.resources.eventtype.merge`) and keeps those
of the Brokers and Channels that exist now, asked of the controller's admin API (so a Broker
deleted, or one made again under the same name, shows none of the old types). The text is made
by pure functions (`eventtypes_table`, `describe_text`). An example event's attributes are
shown, never its data: Kanal does not record it. With `--show-data`, describe reads the Broker's
or Channel's topic for the newest stored event of that kind and prints its data.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka.errors import KafkaError

from channel.errors import KanalError, NotFound
from channel.events import from_kafka_record
from channel.kafka import broker_topic, channel_topic
from channel.resources.eventtype import decode_record, eventtypes_topic, merge
from channel.settings import Settings
from channel.topics import TopicRange
from kanal.cli.client import AdminClient
from kanal.cli.tables import age, line, render, widths_of

__all__ = [
    "KINDS",
    "READ_TIMEOUT",
    "describe_text",
    "eventtypes_table",
    "is_eventtype_kind",
    "read_eventtypes",
    "run_describe_eventtype",
    "run_get_eventtypes",
]

KINDS: Final = ("eventtype", "eventtypes", "et")
READ_TIMEOUT: Final = 15.0
# --show-data: the data printed is cut to this many bytes, and at most this many records of the
# Broker's topic are looked at for the example.
SHOW_DATA_MAX_BYTES: Final = 4096
SHOW_DATA_MAX_RECORDS: Final = 100_000
_REFERENCE_KINDS: Final = ("Broker", "Channel", "KafkaChannel")

Doc = dict[str, Any]


def is_eventtype_kind(kind: str | None) -> bool:
    return kind is not None and kind.lower() in KINDS


def _attribute(doc: Doc, name: str) -> str:
    for attribute in (doc.get("spec") or {}).get("attributes") or ():
        if attribute.get("name") == name:
            return str(attribute.get("value", ""))
    return ""


def _reference(doc: Doc) -> str:
    ref = (doc.get("spec") or {}).get("reference") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def eventtypes_table(docs: Sequence[Doc], all_namespaces: bool, now: datetime | None = None) -> str:
    """`kanal get eventtypes`: a row per EventType."""
    headers = ["NAME", "TYPE", "SOURCE", "REFERENCE", "COUNT", "FIRST SEEN", "LAST SEEN"]
    rows = []
    for doc in docs:
        meta, status = doc.get("metadata") or {}, doc.get("status") or {}
        cells = [
            str(meta.get("name", "")),
            _attribute(doc, "type"),
            _attribute(doc, "source"),
            _reference(doc),
            str(status.get("count", "")),
            age(str(status.get("firstSeen", "")), now),
            age(str(status.get("lastSeen", "")), now),
        ]
        rows.append([str(meta.get("namespace", "")), *cells] if all_namespaces else cells)
    if all_namespaces:
        headers = ["NAMESPACE", *headers]
    widths = widths_of(headers, rows)
    return "\n".join(line(cells, widths) for cells in [headers, *rows])


def describe_text(doc: Doc, now: datetime | None = None, data: str | None = None) -> str:
    """`kanal describe eventtype`: the EventType, what was seen of it and an example's
    attributes; `data` (an example event's data, only when asked for) at the end."""
    meta, spec, status = doc.get("metadata") or {}, doc.get("spec") or {}, doc.get("status") or {}
    ref = spec.get("reference") or {}
    out = [
        f"Name:          {meta.get('name', '')}",
        f"Namespace:     {meta.get('namespace', '')}",
        f"API Version:   {doc.get('apiVersion', '')}",
        f"Reference:     {ref.get('kind', '')} {ref.get('name', '')} ({ref.get('apiVersion', '')})",
        f"Description:   {spec.get('description', '')}",
        "Attributes:",
    ]
    for attribute in spec.get("attributes") or ():
        required = " (required)" if attribute.get("required") else ""
        out.append(f"  {attribute.get('name', '')}: {attribute.get('value', '')}{required}")
    first, last = str(status.get("firstSeen", "")), str(status.get("lastSeen", ""))
    out += [
        "Seen:",
        f"  Count:       {status.get('count', 0)}",
        f"  First seen:  {first} ({age(first, now)} ago)",
        f"  Last seen:   {last} ({age(last, now)} ago)",
        f"  Replicas:    {status.get('replicas', 0)} (ingress processes that counted it)",
        "Example event (attributes only; --show-data for its data):",
    ]
    example = status.get("example") or {}
    width = max((len(name) for name in example), default=0)
    out += [f"  {name.ljust(width)}  {value}" for name, value in sorted(example.items())]
    if data is not None:
        out += ["Data (of the newest such event in the topic):", data]
    return "\n".join(out)


async def read_eventtypes(settings: Settings, uids: Mapping[tuple[str, str, str], str]) -> list[Doc]:
    """Every EventType of the Brokers and Channels in `uids`; raises KanalError if the topic
    cannot be read in time (none is there yet: an empty list)."""
    latest: dict[bytes, bytes | None] = {}
    topic = eventtypes_topic(settings.kafka_resources_topic)
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            async for record in TopicRange(settings, topic).records():
                latest[record.key or b""] = record.value
    except NotFound:
        return []
    except TimeoutError:
        raise KanalError(f"{topic} was not read within {READ_TIMEOUT:.0f}s") from None
    except KafkaError as exc:
        raise KanalError(f"cannot read {topic}: {exc}") from None
    observed = [o for value in latest.values() if (o := decode_record(value)) is not None]
    return merge(observed, uids)


def _uids(client: AdminClient, namespace: str | None) -> dict[tuple[str, str, str], str]:
    uids = {}
    for kind in _REFERENCE_KINDS:
        for doc in client.list(kind, namespace):
            meta = doc.get("metadata") or {}
            uids[(kind, str(meta.get("namespace", "default")), str(meta.get("name", "")))] = str(
                meta.get("uid", "")
            )
    return uids


def _load(settings: Settings, client: AdminClient, namespace: str | None) -> list[Doc]:
    if not settings.kafka_bootstrap_servers:
        raise SystemExit(
            "kanal: EventTypes are read from Kafka: set KANAL_KAFKA_BOOTSTRAP_SERVERS (or run kanal dev)"
        )
    try:
        return asyncio.run(read_eventtypes(settings, _uids(client, namespace)))
    except KanalError as exc:
        raise SystemExit(f"kanal: {exc}") from None


def run_get_eventtypes(args: argparse.Namespace, settings: Settings, client: AdminClient) -> int:
    if getattr(args, "watch", False):
        print("kanal get eventtypes: -w is not supported; run it again", file=sys.stderr)
        return 2
    namespace = None if args.all_namespaces else (args.namespace or "default")
    docs = _load(settings, client, namespace)
    if args.name:
        docs = [d for d in docs if d["metadata"]["name"] == args.name]
        if not docs:
            print(f'kanal: EventType "{args.name}" not found in namespace "{namespace}"', file=sys.stderr)
            return 1
    if not docs and args.output not in ("json", "yaml"):
        where = "any namespace" if namespace is None else f"{namespace} namespace"
        print(f"No resources found in {where}.", file=sys.stderr)
        return 0
    if args.output:
        print(render("EventType", docs, args.output, args.all_namespaces))
    else:
        print(eventtypes_table(docs, args.all_namespaces))
    return 0


def run_describe_eventtype(args: argparse.Namespace, settings: Settings, client: AdminClient) -> int:
    namespace = args.namespace or "default"
    found = [d for d in _load(settings, client, namespace) if d["metadata"]["name"] == args.name]
    if not found:
        print(f'kanal: EventType "{args.name}" not found in namespace "{namespace}"', file=sys.stderr)
        return 1
    data = None
    if getattr(args, "show_data", False):
        data = asyncio.run(_example_data(settings, found[0]))
    print(describe_text(found[0], datetime.now(UTC), data))
    return 0


async def _example_data(settings: Settings, doc: Doc) -> str:
    """The data of the newest event of this EventType still in its Broker's or Channel's topic."""
    ref = doc["spec"]["reference"]
    namespace = doc["metadata"]["namespace"]
    if ref["kind"] == "Broker":
        topic = broker_topic(namespace, ref["name"], settings.kafka_topic_prefix)
    else:
        topic = channel_topic(namespace, ref["name"], settings.kafka_channel_topic_prefix)
    wanted = {a["name"]: a["value"] for a in doc["spec"]["attributes"]}
    newest: tuple[int, bytes | None] | None = None
    reader = TopicRange(settings, topic)
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            async for record in reader.records():
                if reader.scanned > SHOW_DATA_MAX_RECORDS:
                    break
                try:
                    event = from_kafka_record(record.key, record.value, record.headers)
                except KanalError:
                    continue
                attributes = event.attributes
                # type and source, and schema and content type where the EventType has them
                # (a structured event read back has the content type Kafka's binding gave it).
                matches = all(attributes.get(name) == value for name, value in wanted.items())
                if matches and (newest is None or record.timestamp >= newest[0]):
                    newest = (record.timestamp, event.data)
    except (TimeoutError, KafkaError, KanalError) as exc:
        return f"(not read: {exc or 'timed out'})"
    if newest is None:
        return "(no such event is left in the topic)"
    data = newest[1]
    if data is None:
        return "(the event has no data)"
    text = data[:SHOW_DATA_MAX_BYTES].decode("utf-8", errors="replace")
    if len(data) > SHOW_DATA_MAX_BYTES:
        text += f"\n... ({len(data)} bytes, the first {SHOW_DATA_MAX_BYTES} shown)"
    return text
