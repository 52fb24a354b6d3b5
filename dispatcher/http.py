"""The dispatcher's HTTP/1.1 client: POSTs over pooled keep-alive connections, httptools parsing.

Delivery is one kind of request made very often, and a general client's per-request work (its
request and response objects, payload wrappers, tracing hooks, cookie jar, redirect machinery)
was most of the dispatcher's CPU. This client does what delivery needs and nothing else:

- `POST` with the given headers and body, `Host`, `Content-Length`; HTTP and HTTPS (verified
  with the system's certificate store); redirects are never followed (a 3xx is an answer);
- connections kept alive and reused per (scheme, host, port), at most `per_host` open to one
  destination (callers wait for one beyond that), closed when the server says so, when they
  have been idle `idle_timeout` seconds (below common server keep-alive timeouts), or when an
  answer did not come in time;
- a request sent on a reused connection that the server had closed meanwhile (no byte of an
  answer came back) is sent once more on a new connection, as other clients do: the server
  never read it;
- responses with Content-Length, chunked, or delimited by the server closing; interim `1xx`
  answers (`100 Continue`, `103 Early Hints`) are skipped and the final one awaited;
- bounds a hostile server cannot move: at most `max_headers` header fields and `max_head` bytes
  of head per answer, at most `max_response` bytes of body (more is `ResponseTooLarge`, never a
  cut-off body passed on as whole), at most `_MAX_INTERIM` interim answers; a connection that
  sends anything after a whole answer is closed, never read from again (the bytes would be
  taken for the next request's answer);
- with a destination policy (`channel.destinations`), the client resolves a destination's name
  itself, refuses it (`DestinationDenied`) if any of its addresses is denied, and connects to
  the address it checked, on every new connection. Through a proxy the proxy resolves, so only
  the URL's host is checked here (a literal address, a denied name); the proxy's own rules must
  cover the rest;
- one deadline (`timeout`) for the whole exchange: resolving, connecting, sending and reading.

Failures raise `HttpError` (or TimeoutError); the caller turns them into an attempt without a
status.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import httptools

from channel.destinations import DestinationPolicy, IPAddress, literal_address, refusal
from channel.proxy import Proxies, Proxy

__all__ = ["DestinationDenied", "HttpClient", "HttpError", "HttpResponse", "ResponseTooLarge"]

# Interim (1xx) answers skipped before the final one; a server sending more is refused.
_MAX_INTERIM = 16


class HttpError(Exception):
    """No answer: the connection failed, was refused, or closed before a whole response."""


class _Stale(HttpError):
    """A reused connection closed before any byte of the answer: the request was never read."""


class DestinationDenied(HttpError):
    """The destination policy forbids the address (or name) the request would go to."""


class ResponseTooLarge(HttpError):
    """The answer's body is larger than the client keeps: its status and headers, not its body."""

    def __init__(self, message: str, status: int, headers: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class _Target:
    key: tuple[str, str, int, Proxy | None, str | None]
    host: str
    port: int
    tls: bool
    head: bytes  # "POST <path> HTTP/1.1\r\nHost: <host>\r\n" (an absolute URL through a proxy)
    proxy: Proxy | None
    ca_certs: str | None  # PEM CA certificates trusted for this destination, besides the system's
    ip: IPAddress | None  # the address the host is written as, if it is one (no resolving needed)


# Characters a request target may carry as they are; everything else is percent-encoded.
_TARGET_SAFE = "!#$%&'()*+,-./:;=?@[]^_`{|}~"


@functools.lru_cache(maxsize=4096)
def _target(url: str, proxies: Proxies | None = None, ca_certs: str | None = None) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url!r}")
    tls = scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
        host = parts.hostname
        netloc = parts.netloc.rpartition("@")[2]  # never send userinfo
        authority = netloc.encode("idna") if not netloc.isascii() else netloc.encode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise HttpError(f"bad address in {url!r}: {exc}") from exc
    path = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_TARGET_SAFE)
    proxy = proxies.select(scheme, host, port) if proxies is not None else None
    if proxy is not None and not tls:
        # Through a proxy a plain-HTTP request names its whole URL, and carries the proxy's
        # credentials; an https:// one goes through a tunnel, unchanged.
        absolute = scheme.encode() + b"://" + authority + path.encode("ascii")
        head = b"POST " + absolute + b" HTTP/1.1\r\nHost: " + authority + b"\r\n" + proxy.authorization
    else:
        head = b"POST " + path.encode("ascii") + b" HTTP/1.1\r\nHost: " + authority + b"\r\n"
    ca_certs = ca_certs if tls else None
    key = (scheme, host, port, proxy, ca_certs)
    return _Target(key, host, port, tls, head, proxy, ca_certs, literal_address(host))


def _encode_headers(headers: list[tuple[str, str]]) -> bytes:
    out = []
    for name, value in headers:
        line = f"{name}: {value}\r\n"
        if "\n" in value or "\r" in value or "\0" in value or "\n" in name or ":" in name:
            raise HttpError(f"header {name!r} cannot be sent: control characters in it")
        out.append(line)
    text = "".join(out)
    try:
        return text.encode("latin-1", "strict")
    except UnicodeEncodeError:
        # An HTTP/1.1 header is bytes; text beyond Latin-1 has no agreed form in one.
        name, value = next((n, v) for n, v in headers if not f"{n}{v}".isascii() and _not_latin1(n + v))
        raise HttpError(f"header {name}: {value!r} cannot be sent: not Latin-1 text") from None


def _not_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return True
    return False


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self, max_response: int, max_head: int, max_headers: int) -> None:
        self._max = max_response
        self._max_head = max_head
        self._max_headers = max_headers
        # Every byte of an answer: its heads (interim ones too), its body and chunked framing.
        self._max_raw = max_head * 2 + max_response * 2
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._raw = 0  # bytes of the current answer received
        self._head_from = 0  # where in them the current head began (after an interim answer)
        self._head_size = 0  # bytes of the current head parsed
        self._interim = 0  # interim answers to the current request
        self._expecting = False  # a request was sent and its final answer is not whole yet
        self._problem = ""  # why a callback stopped the parser
        self._received = False  # a byte of the current answer has arrived
        self._delimited = False  # the answer's body ends by length or chunking, not by closing
        self._headers_done = False
        self.reusable = True
        self.idle_since = 0.0
        self.used = False  # has carried a request before (so may have been closed by the server)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.reusable = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and not self._delimited:
            self._finish()  # the body was delimited by the server closing: it is whole
        elif not self._received and self.used:
            waiter.set_exception(_Stale("the server closed the kept-alive connection"))
        else:
            reason = f": {exc}" if exc else ""
            waiter.set_exception(HttpError(f"connection closed before a whole response{reason}"))

    def data_received(self, data: bytes) -> None:
        if not self._expecting:
            # Bytes after a whole answer (or before any request): whatever they are, they are
            # not the answer to the next request, so the connection is not used again.
            self.close()
            return
        self._received = True
        self._raw += len(data)
        if self._raw > self._max_raw:
            self._fail(f"the response is over {self._max_raw} bytes")
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("the server switched protocols")
            return
        except httptools.HttpParserError as exc:
            self._fail(self._problem or f"malformed HTTP response: {exc}")
            return
        if not self._headers_done and self._raw - self._head_from > self._max_head:
            self._fail(f"the response head is over {self._max_head} bytes")

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the answer

    def _stop(self, problem: str) -> None:
        """Stop parsing from a callback: the answer is refused for `problem`."""
        self._problem = problem
        raise _Refused(problem)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if not self._expecting:
            self._stop("bytes after a whole response")

    def on_status(self, reason: bytes) -> None:
        self._head_size += len(reason)
        if self._head_size > self._max_head:
            self._stop(f"the response head is over {self._max_head} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._headers) >= self._max_headers:
            self._stop(f"the response has over {self._max_headers} header fields")
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_head:
            self._stop(f"the response head is over {self._max_head} bytes")
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # Interim: the final answer follows on the same connection (101 ends parsing as an
            # upgrade, which is refused).
            self._interim += 1
            if self._interim > _MAX_INTERIM:
                self._stop(f"over {_MAX_INTERIM} interim (1xx) responses")
            self._delimited = True
            return
        for name, value in self._headers:
            lname = name.lower()
            if lname == "content-length" or (lname == "transfer-encoding" and "chunked" in value.lower()):
                self._delimited = True
                break
        if status == 204 or status == 304:
            self._delimited = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max:
            status = self._parser.get_status_code()
            self._problem = f"the response body is over {self._max} bytes"
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(ResponseTooLarge(self._problem, status, self._headers))
            self._fail(self._problem)
            raise _Refused(self._problem)
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            # An interim answer is done: read the next head afresh.
            self._headers = []
            self._headers_done = False
            self._delimited = False
            self._head_from = self._raw
            self._head_size = 0
            return
        self._expecting = False
        if not self._parser.should_keep_alive():
            self.reusable = False
        self._finish()

    def _finish(self) -> None:
        self._expecting = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            status = self._parser.get_status_code()
            waiter.set_result(HttpResponse(status, self._headers, b"".join(self._body)))

    def _fail(self, message: str) -> None:
        self._expecting = False
        self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpError(message))
        if self._transport is not None:
            self._transport.abort()

    # used by the client

    def send(self, data: bytes) -> asyncio.Future[HttpResponse]:
        assert self._transport is not None
        waiter: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._headers = []
        self._body = []
        self._size = 0
        self._raw = 0
        self._head_from = 0
        self._head_size = 0
        self._interim = 0
        self._expecting = True
        self._problem = ""
        self._received = False
        self._delimited = False
        self._headers_done = False
        self._transport.write(data)
        return waiter

    def done(self, loop_time: float) -> None:
        """The exchange is over: ready for the next request (if reusable)."""
        self._waiter = None
        self.used = True
        self.idle_since = loop_time
        if self._expecting or self._transport is None or self._transport.is_closing():
            self.reusable = False

    def close(self) -> None:
        self.reusable = False
        self._expecting = False
        if self._transport is not None:
            self._transport.abort()


class _Refused(Exception):
    """Raised in a parser callback to stop parsing an answer that breaks a bound."""


_SocketAddress = tuple[str, int] | tuple[str, int, int, int]


async def _resolve(target: _Target) -> list[tuple[IPAddress, socket.AddressFamily, _SocketAddress]]:
    """The addresses of the destination's host, as the connection would be made to them."""
    if target.ip is not None:
        family = socket.AF_INET6 if target.ip.version == 6 else socket.AF_INET
        return [(target.ip, family, (str(target.ip), target.port))]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as exc:
        raise HttpError(f"cannot connect to {target.host}:{target.port}: {exc}") from exc
    addresses: list[tuple[IPAddress, socket.AddressFamily, _SocketAddress]] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = cast(_SocketAddress, sockaddr)
            addresses.append((ipaddress.ip_address(address[0]), family, address))
    return addresses


class _TunnelOpener(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT (its status line, once the head is whole)."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._head = bytearray()

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end >= 0:
            self.answer.set_result(bytes(self._head[: self._head.find(b"\r\n")]))
        elif len(self._head) > 64 * 1024:
            self.answer.set_exception(HttpError("the proxy's answer to CONNECT has no end"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(HttpError("the proxy closed the connection during CONNECT"))


class _Pool:
    __slots__ = ("idle", "open", "waiters")

    def __init__(self) -> None:
        self.idle: list[_Connection] = []
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class HttpClient:
    def __init__(
        self,
        *,
        per_host: int = 128,
        idle_timeout: float = 4.0,
        max_response: int = 1024 * 1024,
        max_head: int = 64 * 1024,
        max_headers: int = 128,
        user_agent: str = "kanal",
        tls: ssl.SSLContext | None = None,
        proxies: Proxies | None = None,
        policy: DestinationPolicy | None = None,
    ) -> None:
        self.per_host = per_host
        self.idle_timeout = idle_timeout
        self.max_response = max_response
        self.max_head = max_head
        self.max_headers = max_headers
        # Destinations refused on every new connection (None or no rules: none).
        self._policy = policy if policy is not None and policy.rules else None
        self._agent = f"User-Agent: {user_agent}\r\n".encode()
        self._pools: dict[tuple[str, str, int, Proxy | None, str | None], _Pool] = {}
        self._proxies = proxies
        # HTTPS verification: the system's certificate store unless a context is given.
        self._tls = tls
        # Per destination's CACerts: the system's store and those certificates.
        self._tls_with: dict[str, ssl.SSLContext] = {}
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None

    async def post(
        self,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        timeout: float,
        ca_certs: str | None = None,
    ) -> HttpResponse:
        """POST and read the answer within `timeout`. `ca_certs`: PEM CA certificates an https://
        destination's certificate may chain to, besides the system's (Knative's CACerts)."""
        target = _target(url, self._proxies, ca_certs)
        data = b"".join(
            (
                target.head,
                _encode_headers(headers),
                self._agent,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        async with asyncio.timeout(timeout):
            try:
                return await self._exchange(target, data, fresh=False)
            except _Stale:
                return await self._exchange(target, data, fresh=True)

    async def _exchange(self, target: _Target, data: bytes, *, fresh: bool) -> HttpResponse:
        pool = self._pools.get(target.key)
        if pool is None:
            pool = self._pools[target.key] = _Pool()
            if self._sweeper is None:
                self._sweeper = asyncio.get_running_loop().call_later(self.idle_timeout, self._sweep)
        connection = await self._acquire(pool, target, fresh)
        try:
            response = await connection.send(data)
        except BaseException:
            connection.close()
            self._release(pool, connection)
            raise
        connection.done(asyncio.get_running_loop().time())
        self._release(pool, connection)
        return response

    async def _acquire(self, pool: _Pool, target: _Target, fresh: bool) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            if not fresh:
                now = loop.time()
                while pool.idle:
                    connection = pool.idle.pop()
                    if connection.reusable and now - connection.idle_since < self.idle_timeout:
                        return connection
                    connection.close()
                    pool.open -= 1
            if pool.open < self.per_host:
                pool.open += 1
                try:
                    return await self._connect(target)
                except BaseException:
                    pool.open -= 1
                    self._wake(pool)
                    raise
            if fresh and pool.idle:
                # At the limit and a new connection is wanted: give up an idle one for it.
                pool.idle.pop(0).close()
                pool.open -= 1
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            pool.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in pool.waiters:
                    pool.waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake(pool)  # pass the wake-up on: this caller is gone
                raise

    def _new_connection(self) -> _Connection:
        return _Connection(self.max_response, self.max_head, self.max_headers)

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if target.tls:
            context = self._context(target.ca_certs)
        proxy = target.proxy
        if proxy is not None and self._policy is not None:
            # The proxy resolves the name: what can be checked here is the URL's host.
            rule = self._policy.denied(target.host, target.port, target.ip)
            if rule is not None:
                raise DestinationDenied(f"cannot connect to {refusal(target.host, target.port, rule)}")
        if proxy is not None and context is not None:
            return await self._tunnel(target, proxy, context)
        server_hostname = target.host if context is not None else None
        if proxy is None and self._policy is not None:
            return await self._connect_checked(target, context, server_hostname)
        host, port = (proxy.host, proxy.port) if proxy is not None else (target.host, target.port)
        try:
            _, protocol = await loop.create_connection(
                self._new_connection, host, port, ssl=context, server_hostname=server_hostname
            )
        except OSError as exc:
            through = f" through the proxy {proxy}" if proxy is not None else ""
            raise HttpError(f"cannot connect to {host}:{port}{through}: {exc}") from exc
        return protocol

    async def _connect_checked(
        self, target: _Target, context: ssl.SSLContext | None, server_hostname: str | None
    ) -> _Connection:
        """Resolve the destination here, refuse it if the policy denies any of its addresses, and
        connect to an address that was checked: a name answering differently the second time
        (DNS rebinding) never gets a connection to an address that was not."""
        assert self._policy is not None
        loop = asyncio.get_running_loop()
        addresses = await _resolve(target)
        found = self._policy.denied_addresses(target.host, target.port, (ip for ip, _, _ in addresses))
        if found is not None:
            ip, rule = found
            raise DestinationDenied(f"cannot connect to {refusal(target.host, target.port, rule, ip)}")
        problem: OSError | None = None
        for _, family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
                _, protocol = await loop.create_connection(
                    self._new_connection, sock=sock, ssl=context, server_hostname=server_hostname
                )
            except OSError as exc:
                sock.close()
                problem = exc
                continue
            except BaseException:
                sock.close()
                raise
            return protocol
        raise HttpError(f"cannot connect to {target.host}:{target.port}: {problem}")

    def _context(self, ca_certs: str | None) -> ssl.SSLContext:
        if ca_certs is None:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            return self._tls
        context = self._tls_with.get(ca_certs)
        if context is None:
            context = ssl.create_default_context()
            try:
                context.load_verify_locations(cadata=ca_certs)
            except (ssl.SSLError, ValueError) as exc:  # refused when applied; kept as a failure here
                raise HttpError(f"the destination's CACerts cannot be used: {exc}") from exc
            self._tls_with[ca_certs] = context
        return context

    async def _tunnel(self, target: _Target, proxy: Proxy, context: ssl.SSLContext) -> _Connection:
        """A connection to an https:// destination through a CONNECT tunnel of `proxy`: TLS and
        the certificate check are between this client and the destination."""
        loop = asyncio.get_running_loop()
        where = f"{target.host}:{target.port}"
        try:
            transport, opener = await loop.create_connection(_TunnelOpener, proxy.host, proxy.port)
        except OSError as exc:
            raise HttpError(f"cannot connect to the proxy {proxy} for {where}: {exc}") from exc
        try:
            authority = (f"[{target.host}]" if ":" in target.host else target.host) + f":{target.port}"
            transport.write(
                b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                % (authority.encode("idna"), authority.encode("idna"), proxy.authorization)
            )
            status_line = await opener.answer
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise HttpError(f"the proxy {proxy} answered CONNECT {where} with {status_line[:100]!r}")
            if not 200 <= int(parts[1]) < 300:
                reason = status_line.decode("latin-1")
                raise HttpError(f"the proxy {proxy} refused a tunnel to {where}: {reason}")
            secure = await loop.start_tls(transport, opener, context, server_hostname=target.host)
        except BaseException as exc:
            transport.abort()
            if isinstance(exc, (OSError, ssl.SSLError)):
                raise HttpError(f"TLS to {where} through the proxy {proxy} failed: {exc}") from exc
            raise
        if secure is None:  # pragma: no cover - only when the transport closed meanwhile
            raise HttpError(f"the tunnel to {where} through the proxy {proxy} closed")
        connection = self._new_connection()
        secure.set_protocol(connection)
        connection.connection_made(secure)
        return connection

    def _release(self, pool: _Pool, connection: _Connection) -> None:
        if connection.reusable and not self._closed:
            pool.idle.append(connection)
        else:
            connection.close()
            pool.open -= 1
        self._wake(pool)

    @staticmethod
    def _wake(pool: _Pool) -> None:
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Close connections idle too long, and forget destinations with none left, so sockets to
        subscribers no longer delivered to do not stay open (until their server closes them)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for key, pool in list(self._pools.items()):
            keep = []
            for connection in pool.idle:
                if connection.reusable and now - connection.idle_since < self.idle_timeout:
                    keep.append(connection)
                else:
                    connection.close()
                    pool.open -= 1
            pool.idle = keep
            if pool.open == 0 and not pool.waiters:
                del self._pools[key]
        self._sweeper = loop.call_later(self.idle_timeout, self._sweep) if self._pools else None

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pool in self._pools.values():
            for connection in pool.idle:
                connection.close()
            pool.open -= len(pool.idle)
            pool.idle.clear()
