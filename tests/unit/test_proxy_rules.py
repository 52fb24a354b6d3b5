"""Which deliveries go through a proxy: the environment's HTTP_PROXY, HTTPS_PROXY and NO_PROXY."""

from __future__ import annotations

import base64

import pytest

from channel.proxy import Proxies, Proxy
from dispatcher.http import _target


def proxies(**environ: str) -> Proxies:
    found = Proxies.from_environment(environ)
    assert found is not None
    return found


def test_no_proxy_variables_means_no_proxies() -> None:
    assert Proxies.from_environment({}) is None
    assert Proxies.from_environment({"NO_PROXY": "example.com", "http_proxy": " "}) is None


def test_each_scheme_has_its_own_proxy_and_lower_case_wins() -> None:
    found = proxies(HTTP_PROXY="http://upper:3128", http_proxy="lower:8080", HTTPS_PROXY="secure.example")
    assert found.select("http", "api.example.com", 80) == Proxy("lower", 8080, b"")
    assert found.select("https", "api.example.com", 443) == Proxy("secure.example", 80, b"")
    only_http = proxies(HTTP_PROXY="proxy:3128")
    assert only_http.select("https", "api.example.com", 443) is None


def test_credentials_become_a_basic_proxy_authorization_header() -> None:
    proxy = Proxy.parse("http://us%40er:p%3Ass@proxy.internal:3128")
    assert (proxy.host, proxy.port) == ("proxy.internal", 3128)
    assert proxy.authorization == b"Proxy-Authorization: Basic " + base64.b64encode(b"us@er:p:ss") + b"\r\n"
    assert "p:ss" not in str(proxy) and "us@er" not in str(proxy)


@pytest.mark.parametrize(
    "url", ["https://proxy:3128", "socks5://proxy:1080", "http://:3128", "http://proxy:99999"]
)
def test_unsupported_or_broken_proxy_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="proxy"):
        Proxies.from_environment({"HTTPS_PROXY": url})


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "app.localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"]
)
def test_loopback_is_never_proxied(host: str) -> None:
    assert proxies(HTTP_PROXY="proxy:3128").select("http", host, 8080) is None


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("example.com", "example.com", 80, True),
        ("example.com", "api.example.com", 80, True),
        ("example.com", "notexample.com", 80, False),
        (".example.com", "example.com", 80, False),
        (".example.com", "api.example.com", 80, True),
        ("*.example.com", "api.example.com", 80, True),
        ("*.example.com", "example.com", 80, False),
        ("EXAMPLE.com.", "api.example.com", 80, True),  # names compare without case or a final dot
        ("example.com", "API.Example.COM.", 80, True),
        ("example.com:8080", "example.com", 8080, True),
        ("example.com:8080", "example.com", 80, False),
        ("10.0.0.0/8", "10.20.30.40", 80, True),
        ("10.0.0.0/8", "11.0.0.1", 80, False),
        ("10.0.0.0/8", "ten.example", 80, False),
        ("192.168.1.7", "192.168.1.7", 443, True),
        ("192.168.1.7:443", "192.168.1.7", 80, False),
        ("fd00::/8", "fd00::1", 80, True),
        ("[fd00::1]:8443", "fd00::1", 8443, True),
        (".svc, .cluster.local ,10.96.0.0/12", "display.default.svc", 80, True),
        (".svc, .cluster.local ,10.96.0.0/12", "display.default.svc.cluster.local", 80, True),
        (".svc, .cluster.local ,10.96.0.0/12", "10.100.0.1", 80, True),
        (".svc, .cluster.local ,10.96.0.0/12", "hooks.example.com", 80, False),
        ("*", "anything.example", 80, True),
        ("", "anything.example", 80, False),
    ],
)
def test_no_proxy_entries(no_proxy: str, host: str, port: int, direct: bool) -> None:
    found = proxies(HTTP_PROXY="proxy:3128", NO_PROXY=no_proxy)
    assert (found.select("http", host, port) is None) is direct


def test_a_proxied_plain_http_request_names_the_whole_url_and_carries_the_credentials() -> None:
    found = proxies(HTTP_PROXY="http://kanal:secret@proxy:3128", HTTPS_PROXY="http://proxy:3128")
    plain = _target("http://hooks.example.com:8000/in?x=1", found)
    assert plain.head == (
        b"POST http://hooks.example.com:8000/in?x=1 HTTP/1.1\r\nHost: hooks.example.com:8000\r\n"
        b"Proxy-Authorization: Basic " + base64.b64encode(b"kanal:secret") + b"\r\n"
    )
    assert plain.proxy == Proxy.parse("http://kanal:secret@proxy:3128")
    # Through a tunnel the request is the one sent without a proxy: nothing for the proxy in it.
    tunnelled = _target("https://hooks.example.com/in", found)
    assert tunnelled.head == b"POST /in HTTP/1.1\r\nHost: hooks.example.com\r\n"
    assert tunnelled.proxy == Proxy("proxy", 3128, b"")
    # Direct and proxied connections to one destination are never pooled together.
    assert _target("http://hooks.example.com:8000/", None).key != plain.key
    assert _target("http://127.0.0.1:8000/", found).proxy is None


def test_describe_never_shows_credentials() -> None:
    text = proxies(HTTPS_PROXY="http://kanal:secret@proxy:3128", NO_PROXY=".svc,10.0.0.0/8").describe()
    assert "secret" not in text and "kanal" not in text
    assert "https=proxy:3128" in text and "2 NO_PROXY entries" in text


def test_for_url_and_what_other_clients_are_given() -> None:
    found = proxies(HTTP_PROXY="http://kanal:secret@proxy.internal:3128", HTTPS_PROXY="[fd00::9]:8080")
    plain = found.for_url("http://hooks.example.com/in")
    assert plain is not None and plain.address == "http://proxy.internal:3128"
    assert plain.headers == {"Proxy-Authorization": "Basic " + base64.b64encode(b"kanal:secret").decode()}
    secure = found.for_url("HTTPS://hooks.example.com:8443/")
    assert secure is not None and secure.address == "http://[fd00::9]:8080" and secure.headers == {}
    assert found.for_url("http://localhost:8080/") is None
    assert found.for_url("http://hooks.example.com:99999/") is None  # left to the request to refuse
    assert found.for_url("not a url") is None
