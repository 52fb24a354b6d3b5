"""From YAML manifests to validated resources, with every problem named by document and field.

`kanal apply` accepts the same multi-document YAML as `kubectl apply`. Documents of kinds Kanal
serves become resources; documents of other Kubernetes kinds (a Deployment or Service for the
event display, say) are skipped and reported, so Knative's own example files apply unchanged.
A Knative kind Kanal does not serve is an error, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from channel.errors import Problem, ValidationError
from channel.filters import compile_trigger_filter
from channel.kafka import DEAD_LETTER_TOPIC_ANNOTATION, valid_topic_name
from channel.resources.deduplication import DEDUPLICATION_WINDOW, deduplication_window
from channel.resources.model import (
    Broker,
    Channel,
    KafkaChannel,
    PingSource,
    Resource,
    Subscription,
    Trigger,
)
from channel.resources.protection import ANNOTATIONS as PROTECTION_ANNOTATIONS
from channel.resources.protection import Protection

__all__ = [
    "KINDS",
    "Skipped",
    "load_documents",
    "parse_documents",
    "parse_resource",
    "resource_class",
]

# (apiVersion, kind) -> model
KINDS: dict[tuple[str, str], type[Resource]] = {
    (Broker.API_VERSION, Broker.KIND): Broker,
    (Trigger.API_VERSION, Trigger.KIND): Trigger,
    (Channel.API_VERSION, Channel.KIND): Channel,
    (KafkaChannel.API_VERSION, KafkaChannel.KIND): KafkaChannel,
    (Subscription.API_VERSION, Subscription.KIND): Subscription,
    (PingSource.API_VERSION, PingSource.KIND): PingSource,
}
_KNATIVE_GROUPS = ("knative.dev/",)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A document of a kind Kanal does not manage (it belongs to Kubernetes)."""

    api_version: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"skipped {self.kind} {self.name} ({self.api_version}): not an eventing resource"


def resource_class(kind: str) -> type[Resource] | None:
    """The model for a kind name, case-insensitive, singular or plural (as `kanal get` takes it)."""
    wanted = kind.lower()
    for model in KINDS.values():
        name = model.KIND.lower()
        if wanted in (name, name + "s"):
            return model
    return None


def load_documents(text: str, source: str = "<stdin>") -> list[dict[str, Any]]:
    """The non-empty YAML documents in `text`; a syntax error names the source and line."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ValidationError.single(source, f"invalid YAML: {exc}") from None
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValidationError.single(f"{source}[{i}]", "a document must be a mapping")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(item for item in doc["items"] if isinstance(item, dict))
        else:
            out.append(doc)
    return out


def _loc(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _label(doc: Mapping[str, Any], where: str) -> str:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    ns = meta.get("namespace", "default")
    return f"{doc.get('kind', '?')} {ns}/{meta.get('name', '?')} ({where})"


def parse_resource(doc: Mapping[str, Any], where: str = "document") -> Resource | Skipped:
    """One document as a validated resource, or Skipped; raises ValidationError with all problems."""
    label = _label(doc, where)
    raw_version, raw_kind = doc.get("apiVersion"), doc.get("kind")
    missing = [name for name, value in (("apiVersion", raw_version), ("kind", raw_kind)) if not value]
    if missing:
        raise ValidationError.single(
            label, f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
        )
    wrong = [
        name
        for name, value in (("apiVersion", raw_version), ("kind", raw_kind))
        if not isinstance(value, str)
    ]
    if wrong:
        raise ValidationError.single(label, f"{' and '.join(wrong)} must be a string")
    api_version, kind = str(raw_version), str(raw_kind)
    model = KINDS.get((api_version, kind))
    if model is None:
        if any(group in api_version for group in _KNATIVE_GROUPS):
            served = ", ".join(f"{k} ({v})" for v, k in KINDS)
            raise ValidationError.single(
                f"{label}.kind",
                f"{kind} ({api_version}) is not served by Kanal; it serves {served}",
            )
        meta = doc.get("metadata")
        name = meta.get("name", "?") if isinstance(meta, dict) else "?"
        return Skipped(api_version, kind, str(name))
    body = {k: v for k, v in doc.items() if k != "status"}  # status is computed, never applied
    if isinstance(body.get("spec"), dict) and issubclass(model, Channel):
        body["spec"] = {k: v for k, v in body["spec"].items() if k != "subscribers"}
    try:
        resource = model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise ValidationError(
            Problem(f"{label}: {_loc(err['loc'])}", err["msg"].removeprefix("Value error, "))
            for err in exc.errors()
        ) from None
    if isinstance(resource, Trigger):
        spec_filter = resource.spec.filter.model_dump() if resource.spec.filter else None
        try:
            compile_trigger_filter(spec_filter, resource.spec.filters, path="spec")
        except ValidationError as exc:
            raise ValidationError(Problem(f"{label}: {p.path}", p.message) for p in exc.problems) from None
    topic = resource.metadata.annotations.get(DEAD_LETTER_TOPIC_ANNOTATION)
    if topic is not None and not (isinstance(resource, Trigger | Subscription) and valid_topic_name(topic)):
        raise ValidationError.single(
            f"{label}: metadata.annotations.{DEAD_LETTER_TOPIC_ANNOTATION}",
            "a Kafka topic name (letters, digits, '.', '_', '-'; at most 249) on a Trigger or Subscription",
        )
    _check_protection(resource, label)
    _check_deduplication(resource, label)
    if isinstance(resource, Subscription):
        ref = resource.spec.channel
        problems = []
        if ref.namespace not in (None, resource.metadata.namespace):
            problems.append(
                Problem(f"{label}: spec.channel.namespace", "must be the Subscription's namespace")
            )
        if (ref.api_version, ref.kind) not in (
            (Channel.API_VERSION, "Channel"),
            (KafkaChannel.API_VERSION, "KafkaChannel"),
        ):
            problems.append(
                Problem(
                    f"{label}: spec.channel", f"{ref.kind} ({ref.api_version}) is not a channel Kanal serves"
                )
            )
        if problems:
            raise ValidationError(problems)
    return resource


def _check_protection(resource: Resource, label: str) -> None:
    """Subscriber protection annotations: valid values, and only where they apply."""
    annotations = resource.metadata.annotations
    declared = [name for name in PROTECTION_ANNOTATIONS if name in annotations]
    if not declared:
        return
    if not isinstance(resource, Trigger | Subscription):
        raise ValidationError(
            Problem(f"{label}: metadata.annotations.{name}", "only a Trigger or Subscription takes it")
            for name in declared
        )
    Protection.from_annotations(annotations, f"{label}: metadata.annotations")


def _check_deduplication(resource: Resource, label: str) -> None:
    """The deduplication window: a valid duration, and only on a Broker or Channel."""
    annotations = resource.metadata.annotations
    if DEDUPLICATION_WINDOW not in annotations:
        return
    if not isinstance(resource, Broker | Channel | KafkaChannel):
        raise ValidationError.single(
            f"{label}: metadata.annotations.{DEDUPLICATION_WINDOW}", "only a Broker or Channel takes it"
        )
    deduplication_window(annotations, f"{label}: metadata.annotations")


def parse_documents(
    docs: Iterable[tuple[str, Mapping[str, Any]]],
) -> tuple[list[Resource], list[Skipped]]:
    """Every document validated; raises one ValidationError listing the problems of all of them."""
    resources: list[Resource] = []
    skipped: list[Skipped] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for where, doc in docs:
        try:
            parsed = parse_resource(doc, where)
        except ValidationError as exc:
            problems.extend(exc.problems)
            continue
        if isinstance(parsed, Skipped):
            skipped.append(parsed)
        elif parsed.key in seen:
            problems.append(Problem(f"{parsed.key} ({where})", "appears twice in this apply"))
        else:
            seen.add(parsed.key)
            resources.append(parsed)
    if problems:
        raise ValidationError(problems)
    return resources, skipped
