"""`kanal get KIND [NAME]`: list resources from the controller's admin API, kubectl-style, with
each Trigger's and Subscription's lag read from Kafka (a LAG column: records its consumer group
has yet to commit, `-` before its first commit, `?` when Kafka cannot be asked), and `-w` to
keep watching (`kanal.cli.watch`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any, Final

from channel.resources.manifests import resource_class
from channel.settings import Settings
from kanal.cli.client import AdminClient
from kanal.cli.describe import lag_column
from kanal.cli.observe import read_lags, resource_key
from kanal.cli.tables import render, table
from kanal.cli.watch import watch

__all__ = ["KINDS_HELP", "run_get"]

KINDS_HELP: Final = (
    "brokers, triggers, channels, kafkachannels, subscriptions, pingsources, sources, eventtypes"
)
_SOURCE_KINDS: Final = ("PingSource",)
_LAGGING: Final = ("Trigger", "Subscription")

Doc = dict[str, Any]


def _lags(settings: Settings, kind: str, docs: Sequence[Doc]) -> dict[str, str] | None:
    """LAG cells by namespace/name for Triggers and Subscriptions; None for other kinds."""
    if kind not in _LAGGING:
        return None
    if not settings.kafka_bootstrap_servers:
        return {}  # every cell `?`: Kafka is not configured for this CLI
    found = asyncio.run(read_lags(settings, docs))
    cells = {}
    for doc in docs:
        meta = doc.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "default")), str(meta.get("name", ""))
        cells[f"{namespace}/{name}"] = lag_column(found.get(resource_key(kind, namespace, name)))
    return cells


def run_get(args: argparse.Namespace, settings: Settings, client: AdminClient) -> int:
    if args.watch and args.output:
        print("kanal get: -w prints the table; it does not take -o", file=sys.stderr)
        return 2
    sources = args.kind.lower() in ("source", "sources")
    model = None if sources else resource_class(args.kind)
    if not sources and model is None:
        raise SystemExit(f"kanal: unknown kind {args.kind!r} ({KINDS_HELP})")
    kind = "Sources" if model is None else model.KIND
    namespace = None if args.all_namespaces else (args.namespace or "default")

    def fetch() -> list[Doc]:
        if model is None:
            docs = [doc for k in _SOURCE_KINDS for doc in client.list(k, namespace)]
            return [d for d in docs if not args.name or (d.get("metadata") or {}).get("name") == args.name]
        if args.name:
            return [client.get(model.KIND, namespace or "default", args.name)]
        return client.list(model.KIND, namespace)

    if args.watch:

        def poll() -> tuple[list[str], dict[str, list[str]]]:
            docs = fetch()
            return table(kind, docs, args.all_namespaces, _lags(settings, kind, docs))

        return watch(poll, limit=args.watch_limit)
    docs = fetch()
    if not docs and args.output not in ("json", "yaml"):
        where = "any namespace" if namespace is None else f"{namespace} namespace"
        print(f"No resources found in {where}.", file=sys.stderr)
        return 0
    lags = None if args.output else _lags(settings, kind, docs)
    print(render(kind, docs, args.output or "", args.all_namespaces, lags))
    return 0
