"""Which Kafka topic a request writes to, derived from the resource log.

Pure: `routes_from_documents` maps stored resource documents to a routing table. Only Ready
Brokers and Channels are routable; one that is missing, not Ready or deleted answers 404.
Addresses: a Broker is `/<namespace>/<name>`; a Channel is `/channels/<namespace>/<name>`, or
`/` with the Knative host form `<name>-kn-channel.<namespace>.svc.<cluster domain>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channel.errors import ValidationError
from channel.kafka import broker_topic, channel_topic
from channel.resources.deduplication import deduplication_window

__all__ = ["Route", "channel_from_host", "routes_from_documents"]

CHANNEL_HOST_MARK = "-kn-channel."


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "broker" (later "channel")
    namespace: str
    name: str
    topic: str
    # Seconds of kanal.dev/deduplication-window (ingress.dedup); None: every event is stored.
    deduplication_window: float | None = None


def _ready(doc: Mapping[str, Any]) -> bool:
    status = doc.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())


def routes_from_documents(
    documents: Mapping[str, Mapping[str, Any]],
    topic_prefix: str,
    channel_topic_prefix: str = "knative-channel",
) -> dict[tuple[str, str, str], Route]:
    """The routing table: (kind, namespace, name) -> Route for every Ready Broker and Channel."""
    routes: dict[tuple[str, str, str], Route] = {}
    for key, doc in documents.items():
        kind, ns, name = key.split("/", 2)
        if not _ready(doc):
            continue
        window = _window(doc)
        if kind == "Broker":
            topic = broker_topic(ns, name, topic_prefix)
            routes[("broker", ns, name)] = Route("broker", ns, name, topic, window)
        elif kind in ("Channel", "KafkaChannel"):
            topic = channel_topic(ns, name, channel_topic_prefix)
            routes[("channel", ns, name)] = Route("channel", ns, name, topic, window)
    return routes


def _window(doc: Mapping[str, Any]) -> float | None:
    """The deduplication window a stored resource declares (validated when it was applied)."""
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    try:
        return deduplication_window(annotations)
    except ValidationError:
        return None


def channel_from_host(host: str) -> tuple[str, str] | None:
    """(namespace, name) from `<name>-kn-channel.<namespace>.svc.<domain>[:port]`, else None."""
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    mark = host.find(CHANNEL_HOST_MARK)
    if mark <= 0:
        return None
    name = host[:mark]
    rest = host[mark + len(CHANNEL_HOST_MARK) :].split(".")
    if len(rest) < 2 or rest[1] != "svc" or not rest[0]:
        return None
    return rest[0], name
