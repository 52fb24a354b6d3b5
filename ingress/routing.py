"""Which Kafka topic a request path writes to, derived from the resource log.

Pure: `routes_from_documents` maps stored resource documents to a routing table. Only Ready
Brokers are routable; a Broker that is missing, not Ready or deleted answers 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channel.kafka import broker_topic

__all__ = ["Route", "routes_from_documents"]


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "broker" (later "channel")
    namespace: str
    name: str
    topic: str


def _ready(doc: Mapping[str, Any]) -> bool:
    status = doc.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())


def routes_from_documents(
    documents: Mapping[str, Mapping[str, Any]], topic_prefix: str
) -> dict[tuple[str, str], Route]:
    """The routing table: (namespace, name) -> Route for every Ready Broker."""
    routes: dict[tuple[str, str], Route] = {}
    for key, doc in documents.items():
        kind, ns, name = key.split("/", 2)
        if kind == "Broker" and _ready(doc):
            routes[(ns, name)] = Route("broker", ns, name, broker_topic(ns, name, topic_prefix))
    return routes
