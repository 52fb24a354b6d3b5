"""One HTTP delivery attempt: POST an event in binary mode, return what happened as a value.

No retries and no decisions here (those are in `retry` and `dispatch`): an attempt reports the
status (None when there was no response at all: refused, reset, timed out), a bounded prefix of
the response body, and the response headers. Redirects are never followed (DLV-08).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from channel.events import STRUCTURED_CONTENT_TYPE, CloudEvent, to_http_binary, to_structured_json
from dispatcher.http import HttpClient, HttpError

__all__ = ["Attempt", "HttpPoster", "Poster"]

# A reply may be as large as an event the ingress accepts; an error body is cut to 1 KiB later.
MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    status: int | None
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = field(default_factory=tuple)
    error: str = ""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


class Poster(Protocol):
    async def post(
        self,
        url: str,
        event: CloudEvent,
        *,
        timeout: float,
        headers: Mapping[str, str],
        structured: bool = False,
        ca_certs: str | None = None,
    ) -> Attempt:
        """POST `event` in binary mode, or (`structured`) in the JSON format; `ca_certs`: PEM CA
        certificates an https:// destination may chain to, besides the system's."""
        ...


class HttpPoster:
    """Delivers with Kanal's HTTP/1.1 client (dispatcher.http: pooled keep-alive connections, no
    redirects, one deadline per attempt)."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client

    async def post(
        self,
        url: str,
        event: CloudEvent,
        *,
        timeout: float,
        headers: Mapping[str, str],
        structured: bool = False,
        ca_certs: str | None = None,
    ) -> Attempt:
        if structured:  # delivery.format: json
            request_headers = {"Content-Type": STRUCTURED_CONTENT_TYPE}
            body = to_structured_json(event)
        else:
            ce_headers, body = to_http_binary(event)
            request_headers = dict(ce_headers)
        request_headers.update(headers)
        try:
            response = await self._client.post(
                url, list(request_headers.items()), body, timeout=timeout, ca_certs=ca_certs
            )
        except TimeoutError:
            return Attempt(None, error=f"timed out after {timeout}s")
        except HttpError as exc:
            return Attempt(None, error=str(exc))
        return Attempt(response.status, response.body, tuple(response.headers))
