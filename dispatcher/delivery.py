"""One HTTP delivery attempt: POST an event in binary mode, return what happened as a value.

No retries and no decisions here (those are in `retry` and `dispatch`): an attempt reports the
status (None when there was no response at all: refused, reset, timed out, a destination the
policy denies, an event that cannot be written as a request, a reply over the size limit), the
response body (up to the limit) and the response headers. Redirects are never followed (DLV-08).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from channel.events import (
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    carries_event,
    to_http_binary,
    to_structured_json,
)
from dispatcher.http import HttpClient, HttpError, ResponseTooLarge

__all__ = ["Attempt", "HttpPoster", "Poster"]

# A reply may be as large as an event the ingress accepts; an error body is cut to 1 KiB later.
MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    status: int | None
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = field(default_factory=tuple)
    error: str = ""
    timed_out: bool = False  # no answer within the attempt's deadline

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
        try:
            if structured:  # delivery.format: json
                request_headers = {"Content-Type": STRUCTURED_CONTENT_TYPE}
                body = to_structured_json(event)
            else:
                ce_headers, body = to_http_binary(event)
                request_headers = dict(ce_headers)
        except ValueError as exc:  # an event that cannot be written: a failed attempt, not a drop
            return Attempt(None, error=f"the event cannot be sent: {exc}")
        request_headers.update(headers)
        try:
            response = await self._client.post(
                url, list(request_headers.items()), body, timeout=timeout, ca_certs=ca_certs
            )
        except TimeoutError:
            return Attempt(None, error=f"timed out after {timeout}s", timed_out=True)
        except ResponseTooLarge as exc:
            return _too_large(exc)
        except HttpError as exc:
            return Attempt(None, error=str(exc))
        return Attempt(response.status, response.body, tuple(response.headers))


def _too_large(exc: ResponseTooLarge) -> Attempt:
    """An answer whose body is over the limit. A reply (a 200 carrying a CloudEvent) cut short
    would be stored as if whole: the attempt failed. Any other answer is its status: its body
    is only read for a dead letter's first KiB of error data."""
    if exc.status == 200 and carries_event(exc.headers):
        return Attempt(None, error=f"reply not taken: {exc}")
    return Attempt(exc.status, b"", tuple(exc.headers), error=str(exc))
