"""Knative's Destination (duck v1): where events go, as a `ref` to an addressable, a `uri`, or both.

Resolution turns a Destination into one absolute URL: a `uri` alone must be absolute; a `ref`
resolves through the address of the object it names (a Kubernetes Service by the cluster-DNS
template, a Kanal Broker or Channel by its ingress address); `uri` together with `ref` is a path
resolved relative to the ref's URL, as in Knative. Resolution is pure: the caller passes what
it knows about the addressables.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["Destination", "KReference", "ResolveRef", "resolve_destination"]


class KReference(BaseModel):
    """A reference to an addressable object (Knative duck v1 KReference)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    api_version: str = Field(default="v1", alias="apiVersion")
    namespace: str | None = None


class Destination(BaseModel):
    """A `ref`, a `uri`, or a `ref` plus a relative `uri`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ref: KReference | None = None
    uri: str | None = None
    ca_certs: str | None = Field(default=None, alias="CACerts")
    audience: str | None = None

    @field_validator("ca_certs")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=value)
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"CACerts must be PEM-encoded CA certificates: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Destination:
        if self.ref is None and not self.uri:
            raise ValueError("one of ref or uri is required")
        if self.ref is None and self.uri is not None:
            parts = urlsplit(self.uri)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"uri {self.uri!r} must be an absolute http(s) URL when no ref is given")
        return self


# Given a reference and the namespace it is resolved in, the base URL of the object, or None
# when the object does not exist (yet) or has no address.
ResolveRef = Callable[[KReference, str], str | None]


def resolve_destination(dest: Destination, namespace: str, resolve_ref: ResolveRef) -> str | None:
    """The absolute URL a Destination points at, or None when its ref cannot be resolved."""
    if dest.ref is None:
        return dest.uri
    base = resolve_ref(dest.ref, dest.ref.namespace or namespace)
    if base is None:
        return None
    if not dest.uri:
        return base
    return urljoin(base if base.endswith("/") else base + "/", dest.uri.lstrip("/"))
