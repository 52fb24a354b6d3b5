"""`kanal event-display`: a sink that prints every CloudEvent it receives, like Knative's event_display.

Output blocks read "☁️  cloudevents.Event", then "Context Attributes," (the core attributes in
the CloudEvents SDK's order), "Extensions," (sorted) and "Data," (JSON pretty-printed), each
line indented by two spaces. Answers 202 to a valid event and 400 (with the problems) otherwise.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, TextIO

from channel.errors import InvalidEvent, UnsupportedMediaType
from channel.events import CloudEvent, parse_http_request

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["create_display_app", "format_event"]

_CORE = ("specversion", "type", "source", "subject", "id", "time", "dataschema", "datacontenttype")


def format_event(event: CloudEvent) -> str:
    attrs = event.attributes
    lines = ["☁️  cloudevents.Event", "Context Attributes,"]
    lines += [f"  {name}: {attrs[name]}" for name in _CORE if name in attrs]
    extensions = sorted(k for k in attrs if k not in _CORE)
    if extensions:
        lines.append("Extensions,")
        lines += [f"  {name}: {attrs[name]}" for name in extensions]
    if event.data is not None:
        lines.append("Data,")
        lines += ["  " + line for line in _data_text(event).splitlines()]
    return "\n".join(lines)


def _data_text(event: CloudEvent) -> str:
    media = (event.attributes.get("datacontenttype") or "application/json").split(";")[0].strip().lower()
    data = event.data or b""
    if media.endswith("json"):
        try:
            return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return repr(data)


def create_display_app(out: TextIO = sys.stdout) -> web.Application:
    from aiohttp import web  # here: `kanal tail` formats events with this module, and needs no server

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers = [(k.lower(), v) for k, v in request.raw_headers]
        try:
            events = parse_http_request(headers, body)
        except (InvalidEvent, UnsupportedMediaType) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        for event in events:
            print(format_event(event), file=out, flush=True)
        return web.Response(status=202)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", receive)
    return app
