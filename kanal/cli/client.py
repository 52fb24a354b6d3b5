"""The CLI's side of the admin API: apply, get, delete over HTTP to the controller.

Synchronous (urllib) on purpose: a CLI call is one request, and this keeps `kanal get` fast to
start. Errors from the controller are printed as it sent them, one problem per line.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from channel.proxy import urlopen

__all__ = ["AdminClient", "ClientError"]


class ClientError(Exception):
    """The controller refused the request or could not be reached; the message says why."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


_NO_TOKEN = (
    "set KANAL_CONTROLLER_TOKEN or KANAL_CONTROLLER_TOKEN_FILE to the controller's token, or write "
    "it to {path} (docs/security.md, The control API token)"
)


class AdminClient:
    """Calls the admin API at `base_url`, with `token` as its bearer token when given.
    `token_hint`: where the CLI looked for a token, named when the controller refuses it."""

    def __init__(
        self, base_url: str, timeout: float = 30.0, *, token: str | None = None, token_hint: str = ""
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._token_hint = token_hint

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=self._headers
        )
        try:
            with urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problems = json.loads(raw).get("problems", [])
                text = "\n".join(
                    f"{p['path']}: {p['message']}" if p.get("path") else p["message"] for p in problems
                )
            except (ValueError, AttributeError, KeyError, TypeError):
                text = raw.decode(errors="replace")
            if exc.code == 401 and self._token_hint:
                text = f"{text or 'HTTP 401'}; {_NO_TOKEN.format(path=self._token_hint)}"
            raise ClientError(text or f"HTTP {exc.code}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(
                f"cannot reach the Kanal controller at {self.base_url} ({exc}); is `kanal dev` or "
                "`kanal controller` running? (KANAL_CONTROLLER_URL)"
            ) from None

    def apply(self, documents: list[dict[str, Any]]) -> list[dict[str, str]]:
        return list(self._call("POST", "/v1/apply", {"documents": documents})["results"])

    def delete(self, resources: list[dict[str, str]]) -> list[dict[str, str]]:
        return list(self._call("POST", "/v1/delete", {"resources": resources})["results"])

    def list(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        query = f"?namespace={namespace}" if namespace else ""
        return list(self._call("GET", f"/v1/resources/{kind}{query}")["items"])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/resources/{kind}/{namespace}/{name}")
        return result
