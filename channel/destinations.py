"""The destination policy: addresses and names that deliveries may not reach (KANAL_DELIVERY_DENY).

Whoever may apply a Trigger chooses a URL that Kanal then POSTs to from inside the network, and
what it answers comes back: a reply is stored as an event, a dead letter carries the first KiB
of an error body. Without a policy that reads cloud metadata (http://169.254.169.254/...) or
Kanal's own admin API. So deliveries, replies, dead letters, redrives and PingSource events
never go to:

- the rules of `KANAL_DELIVERY_DENY`, comma-separated, written as `NO_PROXY` entries are: a CIDR
  range or an address (`169.254.0.0/16`, `fd00:ec2::254`), a host name (which denies its
  subdomains too; `.name` or `*.name` only them), each optionally with `:port`
  (`10.0.0.7:9090`, `[fd00::1]:80`). The default denies link-local addresses, where clouds
  serve instance metadata and credentials, and AWS's IPv6 metadata address;
- Kanal's own admin, health and metrics ports on this host (the controller's, the dispatcher's
  and the ingress's metrics port, on loopback, the unspecified address and `KANAL_HOST`) and the
  controller's URL: only those host:port pairs, so subscribers on 127.0.0.1 (`kanal dev`, tests)
  are still reached.

The address that counts is the one connected to: the dispatcher's client resolves a name
itself, refuses it if any of its addresses is denied and connects to an address it checked, so
a name that resolves elsewhere the second time (DNS rebinding) cannot slip by; a check made
when the Trigger was applied could not see that. The controller checks what it can see without
resolving, the URL's host, and marks a Trigger, Subscription or PingSource whose destination is
denied not Ready (reason `DestinationDenied`). An IPv4 address written as an IPv6 one
(`::ffff:169.254.169.254`) or as a number (`2852039166`) counts as the IPv4 address it is.

Pure: parsing and matching only; the resolving is the caller's.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from channel.settings import Settings

__all__ = [
    "DEFAULT_DENY",
    "DestinationPolicy",
    "HostRule",
    "IPAddress",
    "literal_address",
    "parse_host_rule",
    "parse_rules",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DENY = "169.254.0.0/16,fe80::/10,fd00:ec2::254/128"

# Addresses that reach this host whatever interface a server is bound to.
_THIS_HOST = ("127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128")

# A host that inet_aton may read as an IPv4 address in another form: 2852039166, 0xa9fea9fe, 169.254.1
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


@dataclass(frozen=True, slots=True)
class HostRule:
    """One entry of a host list (NO_PROXY, KANAL_DELIVERY_DENY): a name or a range, maybe a port."""

    name: str | None = None  # ".example.com" (subdomains), with `exact` also "example.com"
    exact: bool = False
    network: IPNetwork | None = None
    port: int | None = None
    text: str = ""  # as written (or what it stands for), for messages

    def matches(self, host: str, ip: IPAddress | None, port: int) -> bool:
        """Whether the rule covers `host` (lower case, no trailing dot) at `ip` and `port`."""
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return ip is not None and ip.version == self.network.version and ip in self.network
        assert self.name is not None
        return host.endswith(self.name) or (self.exact and host == self.name[1:])


def parse_host_rule(entry: str, text: str = "") -> HostRule | None:
    """A rule from one entry (None for an empty one); "*" is the name ".*"."""
    entry = entry.strip().lower()
    if not entry:
        return None
    text = text or entry
    port = None
    host, colon, tail = entry.rpartition(":")
    # A port follows a name, an IPv4 address or a bracketed IPv6 address ("::1" has none).
    if colon and tail.isdigit() and (host.endswith("]") or ":" not in host):
        entry, port = host, int(tail)
    try:
        return HostRule(network=ipaddress.ip_network(entry.strip("[]"), strict=False), port=port, text=text)
    except ValueError:
        pass
    entry = entry.rstrip(".")
    if entry.startswith("*."):
        entry = entry[1:]
    if entry.startswith("."):
        return HostRule(name=entry, port=port, text=text)
    return HostRule(name="." + entry, exact=True, port=port, text=text)


def parse_rules(value: str) -> tuple[HostRule, ...]:
    """The rules of a comma-separated list; ValueError naming every entry that is not one."""
    rules = []
    problems = []
    for entry in value.split(","):
        rule = parse_host_rule(entry, f"KANAL_DELIVERY_DENY {entry.strip()}")
        if rule is None:
            continue
        if rule.name is not None and not _plausible_name(rule.name.lstrip(".")):
            problems.append(f"{entry.strip()!r} is neither an address, a CIDR range nor a host name")
            continue
        if rule.port is not None and not 0 < rule.port < 65536:
            problems.append(f"{entry.strip()!r}: port {rule.port} is out of range")
            continue
        rules.append(rule)
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(rules)


def _plausible_name(name: str) -> bool:
    return bool(name) and all(re.fullmatch(r"[a-z0-9_-]+", part) for part in name.split("."))


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host stands for without resolving (None for a name): an IPv4-mapped
    IPv6 address is its IPv4 address, and a numeric form the resolver would read as IPv4 is it."""
    try:
        ip: IPAddress = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not _NUMERIC_HOST.fullmatch(host):
            return None
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return normal_address(ip)


def normal_address(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it connects to."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """The rules deliveries are checked against; an empty policy allows everything."""

    rules: tuple[HostRule, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> DestinationPolicy:
        """KANAL_DELIVERY_DENY, and Kanal's own admin ports on this host."""
        return cls(parse_rules(settings.delivery_deny) + own_ports(settings))

    def denied(self, host: str, port: int, ip: IPAddress | None = None) -> HostRule | None:
        """The rule that denies `host`:`port` connected to at `ip` (if known), or None."""
        if not self.rules:
            return None
        host = host.lower().rstrip(".").strip("[]")
        if ip is None:
            ip = literal_address(host)
        for rule in self.rules:
            if rule.matches(host, ip, port):
                return rule
        return None

    def denied_addresses(
        self, host: str, port: int, ips: Iterable[IPAddress]
    ) -> tuple[IPAddress, HostRule] | None:
        """The first of the addresses `host` resolved to that a rule denies, with the rule."""
        for ip in ips:
            rule = self.denied(host, port, normal_address(ip))
            if rule is not None:
                return ip, rule
        return None

    def denied_url(self, url: str) -> str | None:
        """Why `url` is denied, as far as can be told without resolving its host, or None."""
        parts = urlsplit(url)
        if not parts.hostname:
            return None
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            return None  # not a URL anything could connect to; its delivery fails on its own
        rule = self.denied(parts.hostname, port)
        return None if rule is None else refusal(parts.hostname, port, rule)


def refusal(host: str, port: int, rule: HostRule, ip: IPAddress | None = None) -> str:
    """The message for a denied destination: where, and the rule."""
    where = f"[{host}]" if ":" in host else host
    at = f" ({ip})" if ip is not None and str(ip) != host.strip("[]") else ""
    return f"{where}:{port}{at} is denied by the destination policy ({rule.text})"


def own_ports(settings: Settings) -> tuple[HostRule, ...]:
    """Kanal's admin, health and metrics ports on this host, and the controller's URL: deliveries
    to them are refused (the ingress's event port is not among them: Triggers deliver to Brokers)."""
    ports = {
        "the controller's admin API": settings.controller_port,
        "the dispatcher's health and metrics": settings.dispatcher_port,
        "the ingress's metrics": settings.ingress_metrics_port,
    }
    hosts = [*_THIS_HOST, "localhost"]
    if settings.host not in hosts:
        hosts.append(settings.host)
    rules = [_at_port(host, port, what) for what, port in ports.items() if port != 0 for host in hosts]
    # Where the CLI finds the controller: in a cluster, a Service name, not this host.
    controller = urlsplit(settings.public_controller_url())
    try:
        port = controller.port or (443 if controller.scheme == "https" else 80)
    except ValueError:
        port = 0
    if controller.hostname and port:
        rule = _at_port(controller.hostname, port, "the controller's admin API")
        if rule not in rules:
            rules.append(rule)
    return tuple(rules)


def _at_port(host: str, port: int, what: str) -> HostRule:
    rule = parse_host_rule(f"[{host}]:{port}" if ":" in host else f"{host}:{port}", what)
    assert rule is not None
    return rule
