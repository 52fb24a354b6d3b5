"""The controller's admin API, which the CLI talks to, plus health and metrics.

    POST /v1/apply                     {"documents": [...]}  -> {"results": [...]}
    POST /v1/delete                    {"resources": [{"kind","namespace","name"}]}
    GET  /v1/resources/{kind}[?namespace=ns]                 -> {"items": [...]}
    GET  /v1/resources/{kind}/{namespace}/{name}
    GET  /healthz  /readyz  /metrics

Every call but the last three needs `Authorization: Bearer <token>` (`channel.control.tokens`),
checked before a body is read; without a valid one the answer is 401 with `WWW-Authenticate:
Bearer`. GET calls may be let in without one (KANAL_CONTROLLER_OPEN_READS=true); health and
metrics are always open.

Client mistakes are 4xx with a JSON body listing every problem; never a 500.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from channel.control.controller import ApplyResult
from channel.control.tokens import TokenCheck
from channel.errors import Conflict, NotFound, Unavailable, ValidationError
from channel.resources.manifests import resource_class

__all__ = ["Resources", "create_admin_app"]

log = logging.getLogger(__name__)

# Open to anyone who reaches the port: probes and Prometheus carry no token.
OPEN_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
READS: Final = frozenset({"GET", "HEAD"})
# A refused call is logged at once, then at most once a minute with the number since.
REFUSAL_LOG_INTERVAL: Final = 60.0


class Resources(Protocol):
    """What the admin API needs of the Controller (the tests give it a fake)."""

    @property
    def ready(self) -> bool: ...

    @property
    def documents(self) -> Mapping[str, dict[str, Any]]: ...

    async def apply(self, documents: Sequence[Mapping[str, Any]]) -> Sequence[ApplyResult]: ...

    async def delete(self, keys: Sequence[str]) -> Sequence[ApplyResult]: ...


CONTROLLER_KEY = web.AppKey("controller", Resources)


def _problems(status: int, problems: list[dict[str, str]]) -> web.Response:
    return web.json_response({"problems": problems}, status=status)


def _error(status: int, message: str) -> web.Response:
    return _problems(status, [{"path": "", "message": message}])


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"problems": [{"path": "", "message": "body is not JSON"}]}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"problems": [{"path": "", "message": "body must be an object"}]}),
            content_type="application/json",
        )
    return body


async def apply(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    body = await _body(request)
    docs = body.get("documents")
    if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
        return _error(400, "documents must be a list of objects")
    try:
        results = await controller.apply(docs)
    except ValidationError as exc:
        return _problems(400, [{"path": p.path, "message": p.message} for p in exc.problems])
    except Conflict as exc:
        return _error(409, str(exc))
    except (Unavailable, TimeoutError) as exc:
        return _error(503, f"Kafka is unavailable, nothing was applied: {exc}")
    return web.json_response({"results": [r.as_dict() for r in results]})


async def delete(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    body = await _body(request)
    items = body.get("resources")
    if not isinstance(items, list):
        return _error(400, "resources must be a list")
    keys = []
    for i, item in enumerate(items):
        model = resource_class(str(item.get("kind", ""))) if isinstance(item, dict) else None
        if model is None or not isinstance(item, dict) or not item.get("name"):
            return _error(400, f"resources[{i}]: needs a known kind and a name")
        keys.append(f"{model.KIND}/{item.get('namespace') or 'default'}/{item['name']}")
    try:
        results = await controller.delete(keys)
    except NotFound as exc:
        return _error(404, str(exc))
    except (Unavailable, TimeoutError) as exc:
        return _error(503, f"Kafka is unavailable, nothing was deleted: {exc}")
    return web.json_response({"results": [r.as_dict() for r in results]})


async def list_resources(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    model = resource_class(request.match_info["kind"])
    if model is None:
        return _error(404, f"unknown kind {request.match_info['kind']!r}")
    namespace = request.query.get("namespace")
    items = [
        doc
        for key, doc in sorted(controller.documents.items())
        if key.startswith(model.KIND + "/") and (namespace is None or key.split("/", 2)[1] == namespace)
    ]
    return web.json_response({"items": items})


async def get_resource(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    model = resource_class(request.match_info["kind"])
    if model is None:
        return _error(404, f"unknown kind {request.match_info['kind']!r}")
    ns, name = request.match_info["namespace"], request.match_info["name"]
    doc = controller.documents.get(f"{model.KIND}/{ns}/{name}")
    if doc is None:
        return _error(404, f'{model.KIND} "{name}" not found in namespace "{ns}"')
    return web.json_response(doc)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    if request.app[CONTROLLER_KEY].ready:
        return web.Response(text="ok")
    return web.Response(status=503, text="resource log not loaded")


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


class RefusalLog:
    """Which refused calls get a log line: the first, then one a `REFUSAL_LOG_INTERVAL`, so a
    client guessing tokens cannot flood the log."""

    __slots__ = ("_logged_at", "_refused")

    def __init__(self) -> None:
        self._refused = 0
        self._logged_at: float | None = None

    def take(self, now: float) -> int | None:
        """None: no line for this refusal; else log one, saying how many were refused since the
        last line (this one included)."""
        self._refused += 1
        if self._logged_at is not None and now - self._logged_at < REFUSAL_LOG_INTERVAL:
            return None
        refused, self._refused, self._logged_at = self._refused, 0, now
        return refused


def _authentication(tokens: TokenCheck, *, open_reads: bool) -> Middleware:
    """The middleware that lets a call in only with a token `tokens` accepts."""
    refusals = RefusalLog()

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in READS and (open_reads or request.path in OPEN_PATHS):
            return await handler(request)
        why = tokens.refusal(request.headers.get("Authorization"))
        if why is None:
            return await handler(request)
        if (refused := refusals.take(time.monotonic())) is not None:
            log.warning(
                "admin API refused %s %s from %s: %s (%d refused since the last such line)",
                request.method,
                request.path,
                request.remote,
                why.message,
                refused,
            )
        response = _error(401, why.message)
        response.headers["WWW-Authenticate"] = why.challenge
        return response

    return authenticate


def create_admin_app(
    controller: Resources, tokens: TokenCheck, *, open_reads: bool = False
) -> web.Application:
    """The admin API over `controller`; every call but health and metrics needs a token that
    `tokens` accepts, GET calls too unless `open_reads`."""
    app = web.Application(
        client_max_size=16 * 1024 * 1024,
        middlewares=[_authentication(tokens, open_reads=open_reads)],
    )
    app[CONTROLLER_KEY] = controller
    app.router.add_post("/v1/apply", apply)
    app.router.add_post("/v1/delete", delete)
    app.router.add_get("/v1/resources/{kind}", list_resources)
    app.router.add_get("/v1/resources/{kind}/{namespace}/{name}", get_resource)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
