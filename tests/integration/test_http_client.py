"""The dispatcher's HTTP/1.1 client against raw servers on loopback that answer exactly as each
test needs: well, badly, slowly, hostilely (heads without end, interim answers, bodies over the
limit, bytes after the answer), or not at all; and its destination policy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import urllib.error
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from channel.destinations import DestinationPolicy, parse_rules
from channel.proxy import Proxies, urlopen
from dispatcher.http import DestinationDenied, HttpClient, HttpError, ResponseTooLarge
from support.proxy import forward_proxy
from support.tls import self_signed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Counts connections and hands each to `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self.open -= 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    state = RawServer(handler)
    server = await asyncio.start_server(state._serve, "127.0.0.1", 0, ssl=ssl_context)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state
        server.close()


@contextlib.asynccontextmanager
async def https_server(directory: Path, name: str = "localhost") -> AsyncIterator[tuple[RawServer, str]]:
    """A server answering OK over TLS with a self-signed certificate for `name`, and that
    certificate's file (its own CA)."""
    certfile, keyfile = self_signed(directory, names=(name,))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    holder: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answering(OK)(holder[0])(reader, writer)

    async with raw_server(handler, context) as server:
        holder.append(server)
        yield server, certfile


def answering(*responses: bytes, close_after: bool = False) -> Callable[[RawServer], Handler]:
    """A handler answering the requests, across connections, with the responses in turn (the
    last one again once they run out); with `close_after`, each connection closes after one."""

    def make(state: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await state.read_request(reader)
                writer.write(responses[min(len(state.requests), len(responses)) - 1])
                await writer.drain()
                if close_after:
                    return

        return handle

    return make


@contextlib.asynccontextmanager
async def serving(make: Callable[[RawServer], Handler]) -> AsyncIterator[RawServer]:
    holder: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await make(holder[0])(reader, writer)

    async with raw_server(handler) as state:
        holder.append(state)
        yield state


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Reply: yes\r\n\r\nhello"


async def test_post_request_bytes_response_and_keep_alive() -> None:
    client = HttpClient()
    async with serving(answering(OK, OK)) as server:
        url = f"http://127.0.0.1:{server.port}/sub/path?x=1 2"
        headers = [("ce-id", "1"), ("Prefer", "reply")]
        first = await client.post(url, headers, b'{"a": 1}', timeout=5)
        second = await client.post(url, headers, b"", timeout=5)
    await client.close()
    assert first.status == 200 and first.body == b"hello"
    assert ("X-Reply", "yes") in first.headers
    assert second.status == 200
    assert server.connections == 1  # the second request reused the connection
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /sub/path?x=1%202 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"ce-id: 1" in lines and b"Prefer: reply" in lines and b"Content-Length: 8" in lines
    assert body == b'{"a": 1}'


async def test_a_kept_alive_connection_closed_by_the_server_is_replaced_once() -> None:
    accepted = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"

    async def one_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answers one request per connection; the next is read and dropped unanswered, as a
        # server does when its keep-alive timeout fires as the request arrives.
        await state.read_request(reader)
        writer.write(accepted)
        await writer.drain()
        await state.read_request(reader)

    client = HttpClient()
    async with raw_server(one_then_drop) as state:
        url = f"http://127.0.0.1:{state.port}/"
        assert (await client.post(url, [], b"one", timeout=5)).status == 202
        assert (await client.post(url, [], b"two", timeout=5)).status == 202
    await client.close()
    # "two" went out twice: on the kept-alive connection, which dropped it, then on a new one.
    bodies = [r.rpartition(b"\r\n\r\n")[2] for r in state.requests]
    assert bodies == [b"one", b"two", b"two"]
    assert state.connections == 2


async def test_a_request_the_server_read_and_cut_off_mid_answer_is_not_sent_again() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await state.read_request(reader)
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        await state.read_request(reader)
        writer.write(b"HTTP/1.1 500 Inter")

    client = HttpClient()
    async with raw_server(cut) as state:
        url = f"http://127.0.0.1:{state.port}/"
        assert (await client.post(url, [], b"one", timeout=5)).status == 202
        with pytest.raises(HttpError, match="before a whole response"):
            await client.post(url, [], b"two", timeout=5)
    await client.close()
    assert len(state.requests) == 2


async def test_chunked_and_close_delimited_bodies() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    client = HttpClient()
    async with serving(answering(chunked)) as server:
        assert (await client.post(f"http://127.0.0.1:{server.port}/", [], b"", timeout=5)).body == b"abcde"
    async with serving(answering(until_close, close_after=True)) as server:
        response = await client.post(f"http://127.0.0.1:{server.port}/", [], b"", timeout=5)
        assert response.body == b"all of it"
    await client.close()


async def test_redirects_are_answers_not_followed() -> None:
    redirect = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n"
    client = HttpClient()
    async with serving(answering(redirect)) as server:
        response = await client.post(f"http://127.0.0.1:{server.port}/", [], b"", timeout=5)
    await client.close()
    assert response.status == 302 and len(server.requests) == 1


async def test_timeout_covers_the_whole_exchange_and_drops_the_connection() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    client = HttpClient()
    async with raw_server(silent) as server:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(TimeoutError):
            await client.post(f"http://127.0.0.1:{server.port}/", [], b"x", timeout=0.3)
        assert 0.25 < loop.time() - began < 2
        await asyncio.sleep(0.1)
        assert server.open == 0  # the client closed it: a late answer must not be read as the next one
    await client.close()


@pytest.mark.parametrize(
    "big",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"y" * 100_000, id="length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"y" * 1024 + b"\r\n"
            b"1\r\ny\r\n0\r\n\r\n",
            id="chunked",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * 1025, id="until-close"),
    ],
)
async def test_a_body_over_the_limit_is_an_error_never_a_cut_off_answer(big: bytes) -> None:
    """A reply cut at the limit would be stored as if whole: the answer is refused, with its
    status and headers for the caller to judge; the connection is not used again."""
    client = HttpClient(max_response=1024)
    async with serving(answering(big, OK)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        with pytest.raises(ResponseTooLarge, match="over 1024 bytes") as refused:
            await client.post(url, [], b"", timeout=5)
        assert refused.value.status == 200
        assert (await client.post(url, [], b"", timeout=5)).body == b"hello"  # on a new connection
    await client.close()
    assert server.connections == 2


async def test_a_body_at_the_limit_is_whole() -> None:
    exact = b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + b"y" * 1024
    client = HttpClient(max_response=1024)
    async with serving(answering(exact)) as server:
        response = await client.post(f"http://127.0.0.1:{server.port}/", [], b"", timeout=5)
    await client.close()
    assert response.status == 200 and response.body == b"y" * 1024


@pytest.mark.parametrize(
    "interim",
    [
        pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", id="103"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n", id="100"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n", id="100-102"),
    ],
)
async def test_interim_answers_are_skipped_for_the_final_one(interim: bytes) -> None:
    accepted = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok"
    client = HttpClient()
    async with serving(answering(interim + accepted)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(2):  # and the connection stays usable
            response = await client.post(url, [], b"", timeout=5)
            assert response.status == 202 and response.body == b"ok"
            assert response.headers == [("Content-Length", "2"), ("X-Final", "yes")]
    await client.close()
    assert server.connections == 1


async def test_interim_answers_in_pieces_and_without_end_are_bounded() -> None:
    async def trickled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await state.read_request(reader)
        for piece in (b"HTTP/1.1 103 Ea", b"rly Hints\r\nLink: <", b"/a>\r\n\r\nHTTP/1.1 2", OK[10:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)

    client = HttpClient()
    async with raw_server(trickled) as state:
        response = await client.post(f"http://127.0.0.1:{state.port}/", [], b"", timeout=5)
        assert response.status == 200 and response.body == b"hello"
    async with serving(answering(b"HTTP/1.1 100 Continue\r\n\r\n" * 50)) as server:
        with pytest.raises(HttpError, match="over 16 interim"):
            await client.post(f"http://127.0.0.1:{server.port}/", [], b"", timeout=5)
    await client.close()


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(129)),
            "over 128 header fields",
            id="count",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000, "head is over 65536 bytes", id="one-value"
        ),
        pytest.param(b"HTTP/1.1 200 OK" + b"a" * 70_000, "head is over 65536 bytes", id="status-line"),
        pytest.param(
            b"HTTP/1.1 103 Early Hints\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(129)),
            "over 128 header fields",
            id="interim-count",
        ),
    ],
)
async def test_response_heads_are_bounded(head: bytes, problem: str) -> None:
    client = HttpClient()
    async with serving(answering(head + b"\r\nContent-Length: 0\r\n\r\n", OK)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        with pytest.raises(HttpError, match=problem):
            await client.post(url, [], b"", timeout=5)
        assert (await client.post(url, [], b"", timeout=5)).status == 200  # on a new connection
    await client.close()
    assert server.connections == 2


async def test_trailers_count_toward_the_header_limit() -> None:
    trailers = b"".join(b"T-%d: 1\r\n" % i for i in range(200))
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n" + trailers + b"\r\n"
    client = HttpClient()
    async with serving(answering(chunked)) as server:
        with pytest.raises(HttpError, match="over 128 header fields"):
            await client.post(f"http://127.0.0.1:{server.port}/", [], b"", timeout=5)
    await client.close()


async def test_bytes_after_a_whole_answer_close_the_connection() -> None:
    """Whatever follows a whole answer (the start of another, in the same write, or body bytes
    beyond its Content-Length, later) is not the answer to the next request: the connection is
    closed, and the next request gets a connection of its own."""

    async def extra(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await state.read_request(reader)
            if len(state.requests) == 1:
                writer.write(OK + b"HTTP/1.1 500 Stray\r\nContent-Length: 0\r\n")  # in the same write
            elif len(state.requests) == 2:
                writer.write(OK)
                await writer.drain()
                await asyncio.sleep(0.1)
                writer.write(b"junk")  # while the connection is idle
            else:
                writer.write(OK)
            await writer.drain()

    client = HttpClient()
    async with raw_server(extra) as state:
        url = f"http://127.0.0.1:{state.port}/"
        for _ in range(3):
            response = await client.post(url, [], b"", timeout=5)
            assert response.status == 200 and response.body == b"hello"
            await asyncio.sleep(0.3)
    await client.close()
    assert state.connections == 3


async def test_a_header_that_is_not_latin1_is_an_error() -> None:
    client = HttpClient()
    with pytest.raises(HttpError, match=r"Content-Type: 'text/plain; charset=\u20ac' cannot be sent"):
        await client.post(
            "http://127.0.0.1:1/", [("Content-Type", "text/plain; charset=\u20ac")], b"", timeout=5
        )
    await client.close()


async def test_at_most_per_host_connections_and_the_rest_wait() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await state.read_request(reader)
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    client = HttpClient(per_host=2)
    async with raw_server(slow) as state:
        url = f"http://127.0.0.1:{state.port}/"
        answers = await asyncio.gather(*(client.post(url, [], b"", timeout=5) for _ in range(8)))
    await client.close()
    assert [a.status for a in answers] == [202] * 8
    assert state.most_open == 2 and state.connections == 2


async def test_failures_are_http_errors() -> None:
    client = HttpClient()
    async with raw_server(lambda r, w: asyncio.sleep(0)) as server:
        port = server.port
    with pytest.raises(HttpError, match="cannot connect"):
        await client.post(f"http://127.0.0.1:{port}/", [], b"", timeout=5)  # nothing listens now
    async with serving(answering(b"NOT HTTP\r\n\r\n")) as server:
        with pytest.raises(HttpError, match="malformed HTTP response"):
            await client.post(f"http://127.0.0.1:{server.port}/", [], b"", timeout=5)
    # Cut off in the middle of the answer: not retried (the request was read), an error.
    async with serving(answering(b"HTTP/1.1 200 OK\r\nContent-Le", close_after=True)) as server:
        with pytest.raises(HttpError, match="before a whole response"):
            await client.post(f"http://127.0.0.1:{server.port}/", [], b"", timeout=5)
        assert len(server.requests) == 1
    with pytest.raises(HttpError, match="control characters"):
        await client.post("http://127.0.0.1:1/", [("ce-x", "a\r\nInjected: 1")], b"", timeout=5)
    with pytest.raises(HttpError, match="not an http"):
        await client.post("ftp://example/", [], b"", timeout=5)
    await client.close()


async def test_https_with_a_trusted_certificate(tmp_path: Path) -> None:
    async with https_server(tmp_path) as (server, certfile):
        trusted = HttpClient(tls=ssl.create_default_context(cafile=certfile))
        response = await trusted.post(f"https://localhost:{server.port}/", [], b"secret", timeout=5)
        assert response.status == 200 and server.requests[0].endswith(b"secret")
        await trusted.close()
        untrusted = HttpClient()  # the system's store does not know this certificate
        with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.post(f"https://localhost:{server.port}/", [], b"", timeout=5)
        await untrusted.close()


async def test_a_destination_s_ca_certs_are_trusted_for_it_alone(tmp_path: Path) -> None:
    """Knative's CACerts: PEM certificates a destination's certificate may chain to, trusted for
    requests to that destination only, besides the system's store."""
    async with https_server(tmp_path) as (server, certfile):
        pem = await asyncio.to_thread(Path(certfile).read_text)
        client = HttpClient()
        url = f"https://localhost:{server.port}/"
        response = await client.post(url, [], b"one", timeout=5, ca_certs=pem)
        assert response.status == 200
        # The same URL without them: not trusted, and the connection trusted with them not reused.
        with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.post(url, [], b"two", timeout=5)
        response = await client.post(url, [], b"three", timeout=5, ca_certs=pem)
        assert response.status == 200
        assert [r.rpartition(b"\r\n\r\n")[2] for r in server.requests] == [b"one", b"three"]
        with pytest.raises(HttpError, match="CACerts cannot be used"):
            await client.post(url, [], b"", timeout=5, ca_certs="not a certificate")
        await client.close()


async def test_idle_connections_are_closed_and_unused_destinations_forgotten() -> None:
    client = HttpClient(idle_timeout=0.2)
    async with serving(answering(OK)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        assert (await client.post(url, [], b"", timeout=5)).status == 200
        assert server.open == 1  # kept alive
        for _ in range(50):
            if server.open == 0:
                break
            await asyncio.sleep(0.05)
        assert server.open == 0  # closed by the client, with no request since
        assert not client._pools
        # A destination used again gets a new connection.
        assert (await client.post(url, [], b"", timeout=5)).status == 200
        assert server.connections == 2
    await client.close()


def _through(proxy_port: int, credentials: str = "") -> Proxies:
    found = Proxies.from_environment(
        {
            "HTTP_PROXY": f"http://{credentials}127.0.0.1:{proxy_port}",
            "HTTPS_PROXY": f"127.0.0.1:{proxy_port}",
        }
    )
    assert found is not None
    return found


async def test_plain_http_through_a_proxy_with_credentials() -> None:
    """`hooks.test` is known to no resolver: only the proxy (which sends every name to loopback)
    can reach it. The request goes in absolute form with the credentials, which the proxy
    strips; the connection to the proxy is kept alive for the next delivery."""
    async with serving(answering(OK)) as server, forward_proxy(credentials="Basic a2FuYWw6czNjcmV0") as proxy:
        client = HttpClient(proxies=_through(proxy.port, "kanal:s3cret@"))
        url = f"http://hooks.test:{server.port}/in?x=1"
        for _ in range(2):
            response = await client.post(url, [("ce-id", "1")], b"payload", timeout=5)
            assert response.status == 200 and response.body == b"hello"
        assert proxy.lines == [f"POST http://hooks.test:{server.port}/in?x=1 HTTP/1.1"]  # one connection
        assert server.requests[0].startswith(b"POST /in?x=1 HTTP/1.1\r\nHost: hooks.test:")
        assert b"proxy-authorization" not in b"".join(server.requests).lower()
        assert server.requests[1].endswith(b"payload")
        await client.close()

        # Wrong credentials: the proxy's 407 is the answer (a 4xx, so not retried).
        wrong = HttpClient(proxies=_through(proxy.port, "kanal:guess@"))
        assert (await wrong.post(url, [], b"", timeout=5)).status == 407
        await wrong.close()


async def test_https_through_a_connect_tunnel(tmp_path: Path) -> None:
    """TLS is end to end: the certificate checked is the destination's, for its name."""
    async with https_server(tmp_path, "hooks.test") as (server, certfile), forward_proxy() as proxy:
        trusting = ssl.create_default_context(cafile=certfile)
        client = HttpClient(tls=trusting, proxies=_through(proxy.port))
        url = f"https://hooks.test:{server.port}/in"
        for _ in range(2):
            response = await client.post(url, [], b"secret", timeout=5)
            assert response.status == 200 and response.body == b"hello"
        assert proxy.lines == [f"CONNECT hooks.test:{server.port} HTTP/1.1"]  # one tunnel, kept
        assert len(server.requests) == 2 and server.requests[0].startswith(b"POST /in HTTP/1.1\r\n")
        await client.close()

        # The system's store does not know the certificate: refused through the tunnel too.
        untrusting = HttpClient(proxies=_through(proxy.port))
        with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.post(url, [], b"", timeout=5)
        await untrusting.close()


async def test_a_refused_tunnel_or_an_absent_proxy_is_a_clear_failure() -> None:
    async with forward_proxy(refuse_tunnels=True) as proxy:
        client = HttpClient(proxies=_through(proxy.port))
        with pytest.raises(
            HttpError, match=r"proxy 127\.0\.0\.1:\d+ refused a tunnel to hooks\.test:443: .*403"
        ):
            await client.post("https://hooks.test/", [], b"", timeout=5)
        await client.close()
        port = proxy.port
    client = HttpClient(proxies=_through(port))  # nothing listens there any more
    with pytest.raises(HttpError, match=r"cannot connect to 127\.0\.0\.1:\d+ through the proxy"):
        await client.post("http://hooks.test/", [], b"", timeout=5)
    with pytest.raises(HttpError, match="cannot connect to the proxy"):
        await client.post("https://hooks.test/", [], b"", timeout=5)
    await client.close()


async def test_the_cli_and_jwks_requests_follow_the_same_proxy_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """`channel.proxy.urlopen` (the CLI's calls, the JWKS download): a name goes through the
    proxy, loopback does not even when NO_PROXY leaves it out (urllib alone would proxy it)."""
    async with serving(answering(OK)) as server, forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        for url in (f"http://hooks.test:{server.port}/jwks", f"http://127.0.0.1:{server.port}/direct"):
            with await asyncio.to_thread(urlopen, url, 5) as response:
                assert response.status == 200 and response.read() == b"hello"
        assert proxy.lines == [f"GET http://hooks.test:{server.port}/jwks HTTP/1.1"]
        assert [r.split(b" ")[1] for r in server.requests] == [b"/jwks", b"/direct"]
        monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")
        with pytest.raises(urllib.error.URLError, match="only http:// proxies are supported"):
            await asyncio.to_thread(urlopen, f"http://hooks.test:{server.port}/", 5)


def _policy(deny: str) -> DestinationPolicy:
    return DestinationPolicy(parse_rules(deny))


async def test_a_denied_address_is_refused_before_connecting() -> None:
    async with serving(answering(OK)) as server:
        client = HttpClient(policy=_policy(f"127.0.0.0/8:{server.port},169.254.0.0/16"))
        for url in (
            f"http://127.0.0.1:{server.port}/",
            f"http://127.0.0.2:{server.port}/",
            f"http://[::ffff:127.0.0.1]:{server.port}/",
            "http://169.254.169.254/latest/meta-data",
        ):
            with pytest.raises(DestinationDenied, match="denied by the destination policy"):
                await client.post(url, [], b"", timeout=5)
        assert server.connections == 0
        other = HttpClient(policy=_policy(f"127.0.0.0/8:{server.port + 1}"))
        assert (await other.post(f"http://127.0.0.1:{server.port}/", [], b"", timeout=5)).status == 200
        await client.close()
        await other.close()


async def test_a_name_is_checked_at_the_addresses_it_resolves_to() -> None:
    """`localhost` is no denied address as written; what it resolves to is."""
    async with serving(answering(OK)) as server:
        client = HttpClient(policy=_policy(f"127.0.0.1/32:{server.port}"))
        with pytest.raises(
            DestinationDenied,
            match=rf"localhost:{server.port} \(127\.0\.0\.1\) is denied .*DENY 127\.0\.0\.1/32",
        ):
            await client.post(f"http://localhost:{server.port}/", [], b"", timeout=5)
        await client.close()
        assert server.connections == 0


async def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that resolves to an allowed address when checked and to a denied
    one later never gets a connection to the denied one; each new connection is checked anew."""
    answers = ["127.0.0.1", "127.0.0.2"]
    asked: list[str] = []
    loop = asyncio.get_running_loop()

    async def rebinding(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        asked.append(host)
        address = answers[min(len(asked), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    async with serving(answering(OK, close_after=True)) as server:
        client = HttpClient(policy=_policy("127.0.0.2/32"))
        url = f"http://rebind.test:{server.port}/"
        assert (await client.post(url, [], b"", timeout=5)).status == 200  # at 127.0.0.1, checked
        with pytest.raises(DestinationDenied, match=r"rebind\.test:\d+ \(127\.0\.0\.2\)"):
            await client.post(url, [], b"", timeout=5)  # a new connection: resolved and checked again
        await client.close()
    assert asked == ["rebind.test", "rebind.test"] and server.connections == 1


async def test_through_a_proxy_the_url_s_host_is_checked() -> None:
    """The proxy resolves names, so only what the URL says can be checked here; the proxy's own
    rules must cover the addresses names resolve to."""
    async with serving(answering(OK)) as server, forward_proxy() as proxy:
        client = HttpClient(proxies=_through(proxy.port), policy=_policy("169.254.0.0/16,denied.test"))
        for url in ("http://169.254.169.254/latest", "http://denied.test/", "https://api.denied.test/"):
            with pytest.raises(DestinationDenied):
                await client.post(url, [], b"", timeout=5)
        assert proxy.lines == []
        response = await client.post(f"http://hooks.test:{server.port}/", [], b"", timeout=5)
        assert response.status == 200
        await client.close()
