"""Reading manifests for `kanal apply` and `kanal delete -f`: files, directories or stdin, every
document validated locally with every problem listed, other Kubernetes kinds set aside, and
warnings for fields Kanal takes but does not act on."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from channel.errors import Problem, ValidationError
from channel.resources.manifests import Skipped, load_documents, parse_resource
from channel.resources.model import Broker

__all__ = ["eventing_documents"]


def _read_manifests(paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        if path == "-":
            sources = [("<stdin>", sys.stdin.read())]
        else:
            p = Path(path)
            if p.is_dir():
                files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
                sources = [(str(f), f.read_text()) for f in files]
            elif p.is_file():
                sources = [(str(p), p.read_text())]
            else:
                raise SystemExit(f"kanal: {path}: no such file or directory")
        for source, text in sources:
            for i, doc in enumerate(load_documents(text, source)):
                docs.append((f"{source} document {i + 1}", doc))
    return docs


def eventing_documents(
    paths: list[str], namespace: str | None
) -> tuple[list[dict[str, Any]], list[Skipped | str]]:
    """Validate locally (every problem, with file names); split off other Kubernetes kinds. The
    notices: what was skipped, and warnings about fields Kanal takes but does not act on."""
    keep: list[dict[str, Any]] = []
    skipped: list[Skipped | str] = []
    problems: list[Problem] = []
    for where, doc in _read_manifests(paths):
        meta = doc.setdefault("metadata", {}) if isinstance(doc.get("metadata", {}), dict) else None
        if meta is not None and namespace and "namespace" not in meta:
            meta["namespace"] = namespace
        try:
            parsed = parse_resource(doc, where)
        except ValidationError as exc:
            problems.extend(exc.problems)
            continue
        if isinstance(parsed, Skipped):
            skipped.append(parsed)
            continue
        keep.append(doc)
        skipped.extend(
            f"Warning: {parsed.KIND} {parsed.metadata.namespace}/{parsed.metadata.name}: {path}.audience"
            " is not used: Kanal sends no OIDC token, so that destination must take requests without one"
            for path in _audiences(doc.get("spec"), "spec")
        )
        if isinstance(parsed, Broker) and parsed.spec.config:
            config = parsed.spec.config
            what = " ".join(str(config[k]) for k in ("kind", "namespace", "name") if config.get(k))
            skipped.append(
                f"Warning: Broker {parsed.metadata.namespace}/{parsed.metadata.name}: spec.config"
                f" ({what or 'given'}) is not read by Kanal; its topic is made with"
                " KANAL_KAFKA_TOPIC_PARTITIONS and KANAL_KAFKA_TOPIC_REPLICATION_FACTOR"
            )
    if problems:
        raise ValidationError(problems)
    return keep, skipped


def _audiences(node: Any, path: str) -> list[str]:
    """The paths of the destinations (a `uri` or `ref`) under `node` that name an OIDC audience."""
    if isinstance(node, list):
        return [found for i, item in enumerate(node) for found in _audiences(item, f"{path}[{i}]")]
    if not isinstance(node, dict):
        return []
    found = [path] if node.get("audience") and ("uri" in node or "ref" in node) else []
    return found + [hit for key, value in node.items() for hit in _audiences(value, f"{path}.{key}")]
