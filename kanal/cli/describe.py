"""`kanal describe trigger|subscription|broker|channel|eventtype NAME`: one resource in detail,
as `kubectl describe` shows it (an EventType's is made by `kanal.cli.eventtypes`).

The resource and its status come from the controller's admin API; how its deliveries are going
comes from Kafka (`kanal.cli.observe`): the statistics the dispatchers publish and the consumer
group's lag per partition. A Broker or Channel lists its Triggers or Subscriptions with theirs.
The text is made by pure functions from those inputs (`describe_text`).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import yaml

from channel.kafka import DEAD_LETTER_TOPIC_ANNOTATION, PartitionLag, broker_topic, channel_topic
from channel.settings import Settings
from dispatcher.stats import Statistics
from kanal.cli.client import AdminClient
from kanal.cli.observe import consumer_of, read_lags, read_statistics, resource_key, total_lag
from kanal.cli.tables import age

__all__ = ["KINDS", "add_describe_parser", "describe_text", "run_describe"]

Doc = Mapping[str, Any]
Lags = Mapping[str, list[PartitionLag] | str]
Stats = Mapping[str, Statistics] | str

# What `describe` takes (singular, plural, short), and the kind the admin API knows it as.
KINDS: Final = {
    "trigger": "Trigger",
    "triggers": "Trigger",
    "subscription": "Subscription",
    "subscriptions": "Subscription",
    "broker": "Broker",
    "brokers": "Broker",
    "channel": "Channel",
    "channels": "Channel",
}
_CHILDREN: Final = {"Broker": "Trigger", "Channel": "Subscription"}


def add_describe_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "describe",
        help="show one resource in detail: spec, conditions, addresses, delivery statistics, lag",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "kind",
        choices=sorted(KINDS),
        metavar="KIND",
        help="trigger, broker, subscription, channel, eventtype",
    )
    parser.add_argument("name")
    parser.add_argument("-n", "--namespace", default="default")
    return parser


def _when(ms: int | None, now: datetime) -> str:
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return (
        f"{moment.isoformat(timespec='seconds').replace('+00:00', 'Z')} ({age(moment.isoformat(), now)} ago)"
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    return [
        indent + "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]


def _dead_letter(doc: Doc, parent: Doc | None) -> str:
    status = doc.get("status") or {}
    physical = status.get("physicalSubscription") or {}
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    for found in (
        status.get("deadLetterSinkUri"),
        physical.get("deadLetterSinkUri"),
        (parent or {}).get("status", {}).get("deadLetterSinkUri") if parent else None,
    ):
        if found:
            return str(found)
    topic = annotations.get(DEAD_LETTER_TOPIC_ANNOTATION)
    return f"Kafka topic {topic}" if topic else "<none>"


def _stats_lines(stats: Statistics | str | None, now: datetime) -> list[str]:
    if isinstance(stats, str):
        return ["Delivery statistics:", f"  {stats}"]
    if stats is None or not stats.replicas:
        return ["Delivery statistics:", "  none yet (no dispatcher has handled an event of it)"]
    error = stats.last_error
    last = "<none>" if error is None else f"{error.status} at {_when(error.time_ms, now)}"
    replicas = f"{stats.replicas} dispatcher{'s' if stats.replicas != 1 else ''}"
    return [
        f"Delivery statistics ({replicas}, since {_when(stats.since_ms, now)}):",
        f"  Delivered:      {stats.delivered}",
        f"  Retried:        {stats.retried}",
        f"  Dead-lettered:  {stats.dead_lettered}",
        f"  Dropped:        {stats.dropped}",
        f"  Filtered out:   {stats.filtered}",
        f"  Last error:     {last}",
    ]


def _lag_lines(lags: list[PartitionLag] | str | None, where: str) -> list[str]:
    if lags is None:
        return []
    if isinstance(lags, str):
        return [f"Lag ({where}):", f"  {lags}"]
    rows = [
        [str(p.partition), "-" if p.committed is None else str(p.committed), str(p.end), _lag_cell(p.lag)]
        for p in lags
    ]
    total = total_lag(lags)
    return [
        f"Lag ({where}):",
        *_table(["PARTITION", "COMMITTED", "END", "LAG"], rows),
        f"  Total: {_lag_cell(total)}",
    ]


def _lag_cell(lag: int | None) -> str:
    return "-" if lag is None else str(lag)


def lag_column(lags: list[PartitionLag] | str | None) -> str:
    """A resource's lag in one table cell: the total, `-` before any commit, `?` when unknown."""
    if lags is None or isinstance(lags, str):
        return "?"
    return _lag_cell(total_lag(lags))


def _children_lines(
    child: str, namespace: str, children: Sequence[Doc], stats: Stats, lags: Lags
) -> list[str]:
    rows = []
    for item in children:
        name = str((item.get("metadata") or {}).get("name", ""))
        key = resource_key(child, namespace, name)
        found = None if isinstance(stats, str) else stats.get(key)
        if isinstance(stats, str):
            counts = ["?"] * 4
        elif found is None:
            counts = ["0"] * 4
        else:
            counts = [str(n) for n in (found.delivered, found.retried, found.dead_lettered, found.dropped)]
        rows.append([name, _ready(item), *counts, lag_column(lags.get(key))])
    headers = ["NAME", "READY", "DELIVERED", "RETRIED", "DEAD-LETTERED", "DROPPED", "LAG"]
    return [f"{child}s:", *(_table(headers, rows) if rows else ["  <none>"])]


def _ready(doc: Doc) -> str:
    for condition in (doc.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown"))
    return "Unknown"


def describe_text(
    doc: Doc,
    *,
    stats: Stats,
    lags: Lags,
    settings: Settings,
    parent: Doc | None = None,
    children: Sequence[Doc] = (),
    now: datetime | None = None,
) -> str:
    """What `kanal describe` prints for `doc` (with its Broker or Channel as `parent`, or its
    Triggers or Subscriptions as `children`)."""
    now = now or datetime.now(UTC)
    kind = str(doc.get("kind", ""))
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    status = doc.get("status") or {}
    namespace, name = str(meta.get("namespace", "default")), str(meta.get("name", ""))
    created = str(meta.get("creationTimestamp", ""))
    lines = [
        f"Name:         {name}",
        f"Namespace:    {namespace}",
        f"Kind:         {kind} ({doc.get('apiVersion', '')})",
        f"UID:          {meta.get('uid', '')}",
        f"Created:      {created} ({age(created, now)} ago)" if created else "Created:      -",
    ]
    consumer = consumer_of(doc, settings)
    if kind in ("Trigger", "Subscription"):
        physical = status.get("physicalSubscription") or {}
        subscriber = status.get("subscriberUri") or physical.get("subscriberUri") or "<unresolved>"
        parent_name = spec.get("broker") if kind == "Trigger" else (spec.get("channel") or {}).get("name")
        lines += [
            f"{(kind == 'Trigger' and 'Broker:') or 'Channel:':<14}{parent_name}",
            f"Subscriber:   {subscriber}",
            f"Reply:        {status.get('replyUri') or physical.get('replyUri') or '<none>'}",
            f"Dead letter:  {_dead_letter(doc, parent)}",
        ]
        if consumer is not None:
            lines += [f"Topic:        {consumer[0]}", f"Group:        {consumer[1]}"]
    else:
        topic = (
            broker_topic(namespace, name, settings.kafka_topic_prefix)
            if kind == "Broker"
            else channel_topic(namespace, name, settings.kafka_channel_topic_prefix)
        )
        lines += [
            f"Address:      {(status.get('address') or {}).get('url') or '<none>'}",
            f"Dead letter:  {_dead_letter(doc, None)}",
            f"Topic:        {topic}",
        ]
    lines.append("Spec:")
    lines += ["  " + line for line in yaml.safe_dump(dict(spec), sort_keys=False).rstrip().splitlines()]
    conditions = status.get("conditions") or []
    lines.append("Conditions:")
    if conditions:
        rows = [
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "") or ""),
                str(c.get("message", "") or ""),
            ]
            for c in conditions
        ]
        lines += _table(["TYPE", "STATUS", "REASON", "MESSAGE"], rows)
    else:
        lines.append("  <none>")
    key = resource_key(kind, namespace, name)
    if kind in ("Trigger", "Subscription"):
        lines += _stats_lines(stats if isinstance(stats, str) else stats.get(key), now)
        where = f"group {consumer[1]}" if consumer else "no consumer group"
        lines += _lag_lines(lags.get(key) if consumer else "unknown: the resource has no uid", where)
    else:
        lines += _children_lines(_CHILDREN[kind], namespace, children, stats, lags)
    return "\n".join(lines)


def run_describe(args: argparse.Namespace, settings: Settings, client: AdminClient) -> int:
    kind = KINDS[args.kind]
    doc = client.get(kind, args.namespace, args.name)
    parent: Doc | None = None
    children: list[dict[str, Any]] = []
    if kind == "Trigger":
        broker = str((doc.get("spec") or {}).get("broker", ""))
        parent = next(
            (b for b in client.list("Broker", args.namespace) if b["metadata"]["name"] == broker), None
        )
    elif kind in _CHILDREN:
        children = [
            item for item in client.list(_CHILDREN[kind], args.namespace) if _parent_name(item) == args.name
        ]
    stats: Stats
    lags: Lags
    try:
        settings.bootstrap()
    except ValueError as exc:  # the resource is still worth showing
        stats, lags = f"unknown: {exc}", {}
    else:
        stats, lags = asyncio.run(_read(settings, [doc, *children]))
    print(describe_text(doc, stats=stats, lags=lags, settings=settings, parent=parent, children=children))
    return 0


def _parent_name(doc: Doc) -> str:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Trigger":
        return str(spec.get("broker", ""))
    return str((spec.get("channel") or {}).get("name", ""))


async def _read(settings: Settings, docs: Sequence[Doc]) -> tuple[Stats, Lags]:
    stats, lags = await asyncio.gather(read_statistics(settings), read_lags(settings, docs))
    return stats, lags
