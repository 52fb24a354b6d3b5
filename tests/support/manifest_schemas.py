"""Kubernetes manifests checked against the schemas the API server would apply, without a cluster.

Built-in kinds go against the Kubernetes OpenAPI schemas that the `kubernetes-validate` package
bundles for each minor version, in their strict form (a field the API does not know is an
error, as kubectl's server-side field validation makes it). The Prometheus Operator's
ServiceMonitor and PrometheusRule go against their CRDs' openAPIV3Schema, vendored in
tests/schemas/prometheus-operator (see its NOTICE), made as strict. Names and label values are
checked as the API server checks them, which no schema says. A kind neither knows is a problem
too: nothing is waved through.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
from kubernetes_validate import utils as kubernetes_schemas
from referencing import Registry, Resource

__all__ = ["CRD_SCHEMAS", "kubernetes_versions", "problems"]

CRD_SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "prometheus-operator"
_CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-v1.json",
}
# RFC 1123 subdomain (most objects) and RFC 1035 label (Services, whose name is a DNS label).
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def kubernetes_versions() -> list[str]:
    """The Kubernetes versions whose schemas kubernetes-validate bundles, oldest first ("1.25.0")."""
    return sorted(set(kubernetes_schemas.all_versions()), key=lambda v: tuple(map(int, v.split("."))))


def problems(manifest: dict[str, Any], kube_version: str) -> list[str]:
    """What the API server of Kubernetes `kube_version` would refuse in `manifest`; empty if
    nothing."""
    where = f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"
    validator = _validator(str(manifest.get("apiVersion")), str(manifest.get("kind")), kube_version)
    if validator is None:
        return [f"{where}: {manifest.get('apiVersion')} {manifest.get('kind')} is no kind of Kubernetes "
                f"{kube_version} nor of the CRDs in {CRD_SCHEMAS.name}"]  # fmt: skip
    found = [
        f"{where}: {_path(error) or '(top)'}: {error.message}" for error in validator.iter_errors(manifest)
    ]
    if (manifest["apiVersion"], manifest["kind"]) in _CRDS:  # a CRD's schema says "an object" only
        meta = _validator("meta/v1", "ObjectMeta", kube_version)
        assert meta is not None, f"no ObjectMeta schema for Kubernetes {kube_version}"
        errors = meta.iter_errors(manifest.get("metadata"))
        found += [f"{where}: {_path(error, 'metadata')}: {error.message}" for error in errors]
    return found + [f"{where}: {problem}" for problem in _name_problems(manifest)]


def _path(error: jsonschema.ValidationError, *within: str) -> str:
    return ".".join([*within, *map(str, error.absolute_path)])


def _name_problems(manifest: dict[str, Any]) -> Iterator[str]:
    metadata = manifest.get("metadata") or {}
    name = str(metadata.get("name", ""))
    if manifest.get("kind") == "Service":
        if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
            yield f"metadata.name {name!r} is no DNS label (RFC 1035: at most 63 of a-z, 0-9, -)"
    elif len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        yield f"metadata.name {name!r} is no DNS subdomain (RFC 1123)"
    for field in ("labels", "annotations"):
        for key in metadata.get(field) or {}:
            prefix, _, short = str(key).rpartition("/")
            if not 0 < len(short) <= 63 or (prefix and not _SUBDOMAIN.fullmatch(prefix)):
                yield f"metadata.{field} key {key!r} is not a qualified name"
    for key, value in (metadata.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            yield f"metadata.labels.{key}: {value!r} is no label value (a string of at most 63 characters)"


@functools.cache
def _validator(api_version: str, kind: str, kube_version: str) -> jsonschema.protocols.Validator | None:
    if (api_version, kind) in _CRDS:
        schema = _strict(json.loads((CRD_SCHEMAS / _CRDS[api_version, kind]).read_text()))
        return jsonschema.Draft7Validator(schema)
    # As kubernetes_validate.validate() does it, with each schema read once and not per manifest.
    minor = kubernetes_schemas.major_minor(kube_version)
    bundled = [v for v in kubernetes_versions() if kubernetes_schemas.major_minor(v) == minor]
    if not bundled:
        raise kubernetes_schemas.VersionNotSupportedError(kube_version)
    folder = f"kubernetes-json-schema/v{bundled[-1]}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # apps/v1: apps-v1
    try:
        schema = kubernetes_schemas.schema_contents(f"{folder}/{kind.lower()}-{group}.json", kube_version)
    except FileNotFoundError:
        return None
    registry: Registry[Any] = Resource.from_contents(schema) @ (_definitions(folder) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definitions(folder: str) -> Resource[Any]:
    return Resource.from_contents(kubernetes_schemas.schema_contents(f"{folder}/_definitions.json", folder))


def _strict(schema: Any) -> Any:
    """A CRD schema as the API server's strict field validation applies it: an object that lists
    its properties takes no others, unless it says it keeps unknown fields."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: _strict(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _strict(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [_strict(sub) for sub in out[key]]
    return out
