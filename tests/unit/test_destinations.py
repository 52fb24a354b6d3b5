"""The destination policy: KANAL_DELIVERY_DENY's rules, Kanal's own ports, and how a URL's host and
the addresses a name resolves to are matched."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from channel.destinations import DEFAULT_DENY, DestinationPolicy, literal_address, parse_rules
from channel.settings import Settings


def policy(deny: str = DEFAULT_DENY, **settings: object) -> DestinationPolicy:
    return DestinationPolicy.from_settings(Settings(delivery_deny=deny, **settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        pytest.param(
            "http://169.254.169.254/latest/meta-data", "169.254.0.0/16", id="aws-gcp-azure-metadata"
        ),
        pytest.param("http://169.254.170.2/v2/credentials", "169.254.0.0/16", id="ecs-credentials"),
        pytest.param("http://[fd00:ec2::254]/latest", "fd00:ec2::254/128", id="aws-ipv6-metadata"),
        pytest.param("http://[fe80::1]:8080/", "fe80::/10", id="ipv6-link-local"),
        pytest.param("http://[::ffff:169.254.169.254]/", "169.254.0.0/16", id="ipv4-mapped-ipv6"),
        pytest.param("http://2852039166/", "169.254.0.0/16", id="ipv4-as-a-number"),
        pytest.param("http://0xa9fea9fe/", "169.254.0.0/16", id="ipv4-in-hex"),
        pytest.param("http://169.254.43518/", "169.254.0.0/16", id="ipv4-short-form"),
        pytest.param("https://169.254.169.254:8443/", "169.254.0.0/16", id="any-port"),
    ],
)
def test_the_default_denies_link_local_and_metadata_addresses(url: str, rule: str) -> None:
    why = policy().denied_url(url)
    assert why is not None and f"KANAL_DELIVERY_DENY {rule}" in why


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/",  # subscribers on loopback (kanal dev, the tests)
        "http://localhost:9000/",
        "http://127.0.0.1:8080/ns/default",  # the ingress: a Trigger may deliver to a Broker
        "http://10.0.0.5/",
        "http://hooks.example.com/in",
        "https://[2001:db8::1]/",
        "http://169.254.169.254.example.com/",  # a name, resolved (and checked) at delivery
        "http://cafe/",  # hex letters, but a name
    ],
)
def test_other_destinations_are_allowed(url: str) -> None:
    assert policy().denied_url(url) is None


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("http://127.0.0.1:8081/v1/apply", "the controller's admin API"),
        ("http://localhost:8081/", "the controller's admin API"),
        ("http://127.9.9.9:8082/metrics", "the dispatcher's health and metrics"),
        ("http://[::1]:8082/metrics", "the dispatcher's health and metrics"),
        ("http://127.0.0.1:8083/metrics", "the ingress's metrics"),
        ("http://0.0.0.0:8081/", "the controller's admin API"),
        ("http://[::ffff:127.0.0.1]:8081/", "the controller's admin API"),
    ],
)
def test_kanal_s_own_admin_ports_on_this_host_are_denied(url: str, what: str) -> None:
    why = policy().denied_url(url)
    assert why is not None and what in why


def test_own_ports_follow_the_settings_and_the_controller_url() -> None:
    found = policy(
        controller_port=9101,
        dispatcher_port=9102,
        host="10.1.2.3",
        controller_url="http://kanal-controller.kanal.svc:9101",
    )
    assert found.denied_url("http://127.0.0.1:9101/") is not None
    assert found.denied_url("http://127.0.0.1:8081/") is None  # the default port, not this one's
    assert found.denied_url("http://10.1.2.3:9102/metrics") is not None  # KANAL_HOST
    assert found.denied_url("http://10.1.2.4:9102/metrics") is None
    assert found.denied_url("http://kanal-controller.kanal.svc:9101/v1/apply") is not None
    assert found.denied_url("http://kanal-controller.kanal.svc:80/") is None


def test_an_empty_setting_leaves_only_kanal_s_own_ports() -> None:
    found = policy("")
    assert found.denied_url("http://169.254.169.254/") is None
    assert found.denied_url("http://127.0.0.1:8081/") is not None


@pytest.mark.parametrize(
    ("deny", "url", "denied"),
    [
        ("metadata.google.internal", "http://metadata.google.internal/computeMetadata/v1/", True),
        ("metadata.google.internal", "http://METADATA.google.internal./", True),
        ("internal.example", "http://db.internal.example/", True),
        ("internal.example", "http://notinternal.example/", False),
        (".internal.example", "http://internal.example/", False),
        ("*.internal.example", "http://a.internal.example/", True),
        ("10.0.0.0/8", "http://10.20.30.40:8080/", True),
        ("10.0.0.7:9090", "http://10.0.0.7:9090/", True),
        ("10.0.0.7:9090", "http://10.0.0.7:9091/", False),
        ("[fd00::1]:80", "http://[fd00::1]/", True),
        ("hooks.test:443", "https://hooks.test/", True),
        ("hooks.test:443", "http://hooks.test/", False),
    ],
)
def test_rules_match_names_ranges_and_ports(deny: str, url: str, denied: bool) -> None:
    assert (policy(deny).denied_url(url) is not None) is denied


def test_resolved_addresses_are_checked_with_the_name() -> None:
    found = policy("127.0.0.2/32,metadata.internal")
    ips = [ipaddress.ip_address("127.0.0.3"), ipaddress.ip_address("127.0.0.2")]
    hit = found.denied_addresses("rebind.example", 80, ips)
    assert (
        hit is not None and str(hit[0]) == "127.0.0.2" and hit[1].text == "KANAL_DELIVERY_DENY 127.0.0.2/32"
    )
    assert found.denied_addresses("rebind.example", 80, ips[:1]) is None
    mapped = [ipaddress.ip_address("::ffff:127.0.0.2")]
    assert found.denied_addresses("rebind.example", 80, mapped) is not None
    # A denied name is denied whatever it resolves to.
    assert found.denied_addresses("metadata.internal", 80, ips[:1]) is not None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33' is neither"),
        ("bad host!", "'bad host!' is neither"),
        ("*", "'*' is neither"),
        ("example.com:0", "port 0 is out of range"),
    ],
)
def test_a_bad_rule_refuses_the_settings_naming_it(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_rules(value)
    with pytest.raises(ValidationError, match="delivery_deny"):
        Settings(delivery_deny=f"169.254.0.0/16,{value}")


def test_every_bad_rule_is_named() -> None:
    with pytest.raises(ValueError, match=r"'a b'.*'c d'"):
        parse_rules("a b, 10.0.0.0/8, c d")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("example.com", None),
        ("beef", None),
        ("1.2.3.4.5", None),
    ],
)
def test_literal_addresses(host: str, address: str | None) -> None:
    found = literal_address(host)
    assert (str(found) if found is not None else None) == address
