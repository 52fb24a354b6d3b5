"""`kanal get` output in kubectl's style: aligned columns, relative ages, -o json|yaml.

Pure functions from resource documents to text, so the format is tested without a controller;
`kanal get -w` prints the table once and then one `line` per change, in the table's widths.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

__all__ = ["COLUMNS", "age", "line", "render", "table", "widths_of"]

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


def table(
    kind: str, docs: Sequence[Doc], all_namespaces: bool, lags: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, list[str]]]:
    """The headers and each resource's row (by kind/namespace/name). With `lags` (cells by
    namespace/name, for Triggers and Subscriptions), a LAG column before AGE."""
    headers, row = COLUMNS[kind]
    rows = {}
    for doc in docs:
        name = f"{_meta(doc, 'namespace')}/{_meta(doc, 'name')}"
        cells = row(doc)
        if lags is not None:
            cells.insert(len(cells) - 1, lags.get(name, "?"))
        rows[f"{doc.get('kind', '')}/{name}"] = [_meta(doc, "namespace"), *cells] if all_namespaces else cells
    if lags is not None:
        headers = [*headers[:-1], "LAG", headers[-1]]
    return (["NAMESPACE", *headers] if all_namespaces else list(headers)), rows


def widths_of(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[int]:
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, r, strict=True)]
    return widths


def line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One aligned line; a cell wider than its column pushes the rest right."""
    return "   ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()


def render(
    kind: str,
    docs: Sequence[Doc],
    output: str,
    all_namespaces: bool,
    lags: Mapping[str, str] | None = None,
) -> str:
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
    headers, rows = table(kind, docs, all_namespaces, lags)
    widths = widths_of(headers, rows.values())
    return "\n".join(line(cells, widths) for cells in [headers, *rows.values()])
