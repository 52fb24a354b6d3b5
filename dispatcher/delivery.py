"""One HTTP delivery attempt: POST an event in binary mode, return what happened as a value.

No retries and no decisions here (those are in `retry` and `dispatch`): an attempt reports the
status (None when there was no response at all: refused, reset, timed out), a bounded prefix of
the response body, and the response headers. Redirects are never followed (DLV-08).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from channel.events import CloudEvent, to_http_binary

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
        self, url: str, event: CloudEvent, *, timeout: float, headers: Mapping[str, str]
    ) -> Attempt: ...


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


class HttpPoster:
    """Delivers over one shared aiohttp session (connection pooling, no redirects)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def post(
        self, url: str, event: CloudEvent, *, timeout: float, headers: Mapping[str, str]
    ) -> Attempt:
        ce_headers, body = to_http_binary(event)
        request_headers = dict(ce_headers)
        request_headers.update(headers)
        try:
            # aiohttp's own total timeout (connect, send, response and body read): one timer per
            # attempt instead of a second one around it.
            async with self._session.post(
                url,
                data=body,
                headers=request_headers,
                allow_redirects=False,
                timeout=_timeout(timeout),
            ) as response:
                payload = await response.content.read(MAX_RESPONSE_BYTES)
                return Attempt(response.status, payload, tuple(response.headers.items()))
        except TimeoutError:
            return Attempt(None, error=f"timed out after {timeout}s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Attempt(None, error=f"{type(exc).__name__}: {exc}")
