"""`kanal send`: post one CloudEvent to a Broker, a Channel or any URL, and say what happened.

    kanal send --broker default -n event-example --type greeting --source cli --data '{"msg":"hi"}'
    kanal send --channel orders -n shop --type order.created --source cli --data @order.json
    kanal send --url http://127.0.0.1:8080/ns/default --type t --source s --structured

The event is built and validated with Kanal's own codec, so a bad attribute is reported before
anything is sent. The address of a Broker or Channel comes from its status, through the
controller. Binary mode by default, `--structured` for the JSON format.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from channel.errors import Problem, ValidationError
from channel.events import STRUCTURED_CONTENT_TYPE, CloudEvent, to_http_binary, to_structured_json
from channel.events.validation import validate_attributes
from channel.proxy import urlopen
from kanal.cli.client import AdminClient

__all__ = ["add_send_parser", "build_event", "destination_url"]

_RESERVED = frozenset({"id", "source", "type", "specversion", "subject", "datacontenttype", "time"})


def add_send_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    send = sub.add_parser("send", help="post a CloudEvent to a Broker, a Channel or a URL")
    where = send.add_mutually_exclusive_group(required=True)
    where.add_argument("--broker", help="Broker name (its address from the controller)")
    where.add_argument("--channel", help="Channel name (its address from the controller)")
    where.add_argument("--url", help="post to this URL")
    send.add_argument("-n", "--namespace", default="default")
    send.add_argument("--type", required=True, dest="event_type", help="the event's type attribute")
    send.add_argument("--source", required=True, help="the event's source attribute")
    send.add_argument("--id", help="the event's id (default: a random UUID)")
    send.add_argument("--subject")
    send.add_argument("--time", help="RFC 3339 timestamp (default: none)")
    send.add_argument("--data", help="the data: a string, or @FILE to read it from a file")
    send.add_argument("--content-type", help="datacontenttype (default: application/json for JSON data)")
    send.add_argument(
        "-e", "--extension", action="append", default=[], metavar="NAME=VALUE", help="an extension"
    )
    send.add_argument("--structured", action="store_true", help="send in structured mode (JSON format)")
    send.add_argument("--token", help="bearer token, when the ingress checks them")
    send.add_argument("--timeout", type=float, default=30.0)
    return send


def _read_data(value: str | None) -> bytes | None:
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_bytes()
        except OSError as exc:
            raise SystemExit(f"kanal send: cannot read {path}: {exc.strerror}") from None
    return value.encode()


def build_event(args: argparse.Namespace) -> CloudEvent:
    """The event the arguments describe; ValidationError listing every problem."""
    attributes = {
        "specversion": "1.0",
        "id": args.id or str(uuid.uuid4()),
        "source": args.source,
        "type": args.event_type,
    }
    problems: list[Problem] = []
    if args.subject is not None:
        attributes["subject"] = args.subject
    if args.time is not None:
        attributes["time"] = args.time
    for spec in args.extension:
        name, sep, value = spec.partition("=")
        if not sep:
            problems.append(Problem(f"--extension {spec}", "give NAME=VALUE"))
        elif name in _RESERVED:
            problems.append(Problem(f"--extension {spec}", f"use --{name} for the {name} attribute"))
        else:
            attributes[name] = value
    data = _read_data(args.data)
    content_type = args.content_type
    if data is not None and content_type is None:
        try:
            json.loads(data)
            content_type = "application/json"
        except ValueError:
            content_type = "text/plain"
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    validate_attributes(attributes, problems)
    if problems:
        raise ValidationError(problems)
    return CloudEvent(attributes, data)


def destination_url(args: argparse.Namespace, client: AdminClient) -> str:
    if args.url:
        return str(args.url)
    kind, name = ("Broker", args.broker) if args.broker else ("Channel", args.channel)
    doc = client.get(kind, args.namespace, name)
    url = ((doc.get("status") or {}).get("address") or {}).get("url")
    if not url:
        raise SystemExit(f"kanal send: {kind} {args.namespace}/{name} has no address yet (not Ready)")
    return str(url)


def run_send(args: argparse.Namespace, client: AdminClient) -> int:
    try:
        event = build_event(args)
    except ValidationError as exc:
        print("kanal send: invalid event, nothing was sent:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    url = destination_url(args, client)
    if args.structured:
        headers = {"Content-Type": STRUCTURED_CONTENT_TYPE}
        body = to_structured_json(event)
    else:
        pairs, body = to_http_binary(event)
        headers = dict(pairs)
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urlopen(request, timeout=args.timeout) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"kanal send: cannot reach {url}: {reason}", file=sys.stderr)
        return 1
    print(f"{status} {event.id} -> {url}")
    if text.strip():
        print(text.strip(), file=sys.stderr if status >= 300 else sys.stdout)
    return 0 if 200 <= status < 300 else 1
