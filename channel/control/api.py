"""The controller's admin API, which the CLI talks to, plus health and metrics.

    POST /v1/apply                     {"documents": [...]}  -> {"results": [...]}
    POST /v1/delete                    {"resources": [{"kind","namespace","name"}]}
    GET  /v1/resources/{kind}[?namespace=ns]                 -> {"items": [...]}
    GET  /v1/resources/{kind}/{namespace}/{name}
    GET  /healthz  /readyz  /metrics

Client mistakes are 4xx with a JSON body listing every problem; never a 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from channel.control.controller import Controller
from channel.errors import Conflict, NotFound, Unavailable, ValidationError
from channel.resources.manifests import resource_class

__all__ = ["create_admin_app"]

log = logging.getLogger(__name__)

CONTROLLER_KEY = web.AppKey("controller", Controller)


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
        for key, doc in sorted(controller.log.documents.items())
        if key.startswith(model.KIND + "/") and (namespace is None or key.split("/", 2)[1] == namespace)
    ]
    return web.json_response({"items": items})


async def get_resource(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    model = resource_class(request.match_info["kind"])
    if model is None:
        return _error(404, f"unknown kind {request.match_info['kind']!r}")
    ns, name = request.match_info["namespace"], request.match_info["name"]
    doc = controller.log.documents.get(f"{model.KIND}/{ns}/{name}")
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


def create_admin_app(controller: Controller) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[CONTROLLER_KEY] = controller
    app.router.add_post("/v1/apply", apply)
    app.router.add_post("/v1/delete", delete)
    app.router.add_get("/v1/resources/{kind}", list_resources)
    app.router.add_get("/v1/resources/{kind}/{namespace}/{name}", get_resource)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
