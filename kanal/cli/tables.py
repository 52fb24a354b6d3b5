"""`kanal get` output in kubectl's style: aligned columns, relative ages, -o json|yaml.

Pure functions from resource documents to text, so the format is tested without a controller.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

__all__ = ["COLUMNS", "age", "render"]

Doc = dict[str, Any]


def age(timestamp: str, now: datetime | None = None) -> str:
    """kubectl's short age: 45s, 12m, 5h, 3d."""
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        seconds = 0
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _ready(doc: Doc) -> tuple[str, str]:
    for cond in (doc.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return cond.get("status", "Unknown"), cond.get("reason", "")
    return "Unknown", ""


def _meta(doc: Doc, key: str) -> str:
    return str((doc.get("metadata") or {}).get(key, ""))


def _broker_row(doc: Doc) -> list[str]:
    ready, reason = _ready(doc)
    url = ((doc.get("status") or {}).get("address") or {}).get("url", "")
    return [_meta(doc, "name"), url, age(_meta(doc, "creationTimestamp")), ready, reason]


def _trigger_row(doc: Doc) -> list[str]:
    ready, reason = _ready(doc)
    return [
        _meta(doc, "name"),
        ready,
        reason,
        str((doc.get("spec") or {}).get("broker", "")),
        str((doc.get("status") or {}).get("subscriberUri", "")),
        age(_meta(doc, "creationTimestamp")),
    ]


def _subscription_row(doc: Doc) -> list[str]:
    ready, reason = _ready(doc)
    physical = (doc.get("status") or {}).get("physicalSubscription") or {}
    channel = ((doc.get("spec") or {}).get("channel") or {}).get("name", "")
    return [
        _meta(doc, "name"),
        ready,
        reason,
        str(channel),
        str(physical.get("subscriberUri", "")),
        age(_meta(doc, "creationTimestamp")),
    ]


def _ping_row(doc: Doc) -> list[str]:
    ready, reason = _ready(doc)
    spec = doc.get("spec") or {}
    return [
        _meta(doc, "name"),
        str((doc.get("status") or {}).get("sinkUri", "")),
        str(spec.get("schedule", "")),
        age(_meta(doc, "creationTimestamp")),
        ready,
        reason,
    ]


def _source_row(doc: Doc) -> list[str]:
    """`kanal get sources`: any source kind, in `kn source list`'s columns plus REASON and AGE."""
    ready, reason = _ready(doc)
    group = str(doc.get("apiVersion", "")).split("/")[0]
    return [
        _meta(doc, "name"),
        str(doc.get("kind", "")),
        f"{str(doc.get('kind', '')).lower()}s.{group}",
        str((doc.get("status") or {}).get("sinkUri", "")),
        ready,
        reason,
        age(_meta(doc, "creationTimestamp")),
    ]


COLUMNS: dict[str, tuple[list[str], Callable[[Doc], list[str]]]] = {
    # Knative's PingSource CRD printer columns (what `kubectl get pingsources` shows).
    "PingSource": (["NAME", "SINK", "SCHEDULE", "AGE", "READY", "REASON"], _ping_row),
    "Sources": (["NAME", "TYPE", "RESOURCE", "SINK", "READY", "REASON", "AGE"], _source_row),
    "Broker": (["NAME", "URL", "AGE", "READY", "REASON"], _broker_row),
    "Channel": (["NAME", "URL", "AGE", "READY", "REASON"], _broker_row),
    "KafkaChannel": (["NAME", "URL", "AGE", "READY", "REASON"], _broker_row),
    "Subscription": (["NAME", "READY", "REASON", "CHANNEL", "SUBSCRIBER_URI", "AGE"], _subscription_row),
    "Trigger": (["NAME", "READY", "REASON", "BROKER", "SUBSCRIBER_URI", "AGE"], _trigger_row),
}


def render(kind: str, docs: Sequence[Doc], output: str, all_namespaces: bool) -> str:
    """The text `kanal get` prints."""
    if output == "json":
        if len(docs) == 1:
            return json.dumps(docs[0], indent=2)
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}, indent=2)
    if output == "yaml":
        if len(docs) == 1:
            return yaml.safe_dump(docs[0], sort_keys=False).rstrip()
        return yaml.safe_dump(
            {"apiVersion": "v1", "kind": "List", "items": list(docs)}, sort_keys=False
        ).rstrip()
    headers, row = COLUMNS[kind]
    rows = [row(doc) for doc in docs]
    if all_namespaces:
        headers = ["NAMESPACE", *headers]
        rows = [[_meta(doc, "namespace"), *r] for doc, r in zip(docs, rows, strict=True)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]
    return "\n".join(lines)
