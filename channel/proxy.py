"""Which proxy, if any, an outgoing request goes through: the environment's settings, read as curl
and Go read them. The dispatcher's deliveries follow them (dispatcher/http.py), and so do the
CLI's calls and the ingress's JWKS download (`urlopen` here).

- `HTTP_PROXY` (or `http_proxy`) for `http://` subscribers, `HTTPS_PROXY` (or `https_proxy`) for
  `https://` ones: `http://[user:password@]host[:port]` (a bare `host:port` is taken as http; the
  port defaults to 80). An `https://` subscriber is reached through a CONNECT tunnel, so the TLS
  session and its certificate check stay between Kanal and the subscriber. A proxy reached over
  TLS itself, or SOCKS, is refused at start-up rather than ignored.
- `NO_PROXY` (or `no_proxy`): destinations reached directly, comma-separated: `*` for all; a
  name matches itself and its subdomains (`example.com`), with a leading `.` or `*.` only its
  subdomains; an IP address; a CIDR range (`10.0.0.0/8`, as Kubernetes clusters set it); each
  optionally with `:port`.
- Loopback destinations (`localhost`, 127.0.0.0/8, ::1) are never proxied.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.client import HTTPResponse
from typing import Any
from urllib.parse import unquote, urlsplit

from channel.destinations import HostRule, parse_host_rule

__all__ = ["Proxies", "Proxy", "urlopen"]


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: bytes  # a whole "Proxy-Authorization: ..." header line, or b""
    url: str = field(default="", compare=False, repr=False)  # as given, credentials included

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """The proxy's URL without credentials."""
        return f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """The Proxy-Authorization header, if the proxy has credentials, for clients that take
        headers apart from the URL."""
        if not self.authorization:
            return {}
        name, _, value = self.authorization.decode("latin-1").rstrip("\r\n").partition(": ")
        return {name: value}

    @classmethod
    def parse(cls, url: str) -> Proxy:
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme.lower() != "http":
            raise ValueError(f"proxy {url!r}: only http:// proxies are supported")
        if not parts.hostname:
            raise ValueError(f"proxy {url!r}: no host")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise ValueError(f"proxy {url!r}: {exc}") from exc
        authorization = b""
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = b"Proxy-Authorization: Basic " + base64.b64encode(credentials) + b"\r\n"
        return cls(parts.hostname, port, authorization, url)


@dataclass(frozen=True, slots=True)
class Proxies:
    http: Proxy | None = None
    https: Proxy | None = None
    bypass_all: bool = False
    bypasses: tuple[HostRule, ...] = ()
    # Computed once: a delivery's target is looked up by (URL, proxies), and hashing the proxies
    # field by field each time cost about 2 µs per delivery.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.http, self.https, self.bypass_all, self.bypasses)))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Proxies | None:
        """The proxies the environment names, or None when it names none."""

        def value(name: str) -> str:
            return (environ.get(name.lower()) or environ.get(name.upper()) or "").strip()

        http, https = value("http_proxy"), value("https_proxy")
        if not http and not https:
            return None
        entries = [e for e in (parse_host_rule(part) for part in value("no_proxy").split(",")) if e]
        return cls(
            http=Proxy.parse(http) if http else None,
            https=Proxy.parse(https) if https else None,
            bypass_all=any(e.name == ".*" for e in entries),
            bypasses=tuple(e for e in entries if e.name != ".*"),
        )

    def describe(self) -> str:
        """For the log: the proxies (never their credentials) and how many destinations bypass them."""
        bypassed = "every destination" if self.bypass_all else f"{len(self.bypasses)} NO_PROXY entries"
        return f"proxies http={self.http or '-'} https={self.https or '-'}, except {bypassed} and loopback"

    def for_url(self, url: str) -> Proxy | None:
        """The proxy for an http(s) URL, or None to connect directly (or for a URL without a host)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            return None  # the request itself reports the bad URL
        return self.select(scheme, parts.hostname or "", port) if parts.hostname else None

    def select(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a destination, or None to connect directly."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.bypass_all:
            return None
        host = host.lower().rstrip(".")
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            ip = None
        if host == "localhost" or host.endswith(".localhost") or (ip is not None and ip.is_loopback):
            return None
        if any(e.matches(host, ip, port) for e in self.bypasses):
            return None
        return proxy


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} not followed", headers, fp)


def urlopen(
    request: urllib.request.Request | str, timeout: float, *, follow_redirects: bool = True
) -> HTTPResponse:
    """`urllib.request.urlopen` with these rules rather than urllib's own (which proxies loopback
    unless NO_PROXY names it, and knows no CIDR ranges). A proxy setting Kanal cannot use is a
    URLError naming it. Without `follow_redirects`, a redirect is an HTTPError."""
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    try:
        proxies = Proxies.from_environment(os.environ)
    except ValueError as exc:
        raise urllib.error.URLError(str(exc)) from None
    proxy = proxies.for_url(url) if proxies is not None else None
    handler = urllib.request.ProxyHandler({urlsplit(url).scheme: proxy.url} if proxy is not None else {})
    handlers: list[urllib.request.BaseHandler] = [handler]
    if not follow_redirects:
        handlers.append(_NoRedirects())
    response: HTTPResponse = urllib.request.build_opener(*handlers).open(request, timeout=timeout)
    return response
