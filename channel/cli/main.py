"""The `kanal` command: run components, and manage resources the way kubectl does.

kanal dev [--apply PATH]... [--sink NAME=PORT]...   everything on one machine
kanal controller | ingress | dispatcher             one component (as the Helm chart runs them)
kanal apply -f FILE|DIR|-                           create or update resources
kanal get KIND [NAME] [-n NS | -A] [-o json|yaml]   list resources
kanal delete KIND NAME [-n NS] | -f FILE            delete resources
kanal send --broker NAME -n NS --type T --source S  post a CloudEvent
kanal source run --sink URL -- COMMAND...           run a program as an event source (K_SINK)
kanal replay trigger NAME -n NS --from TIME|OFFSET  deliver a Trigger's events again
kanal deadletters list|redrive --trigger NAME -n NS dead letters kept in a Kafka topic
kanal event-display [--port N]                      a sink that prints events
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from channel.cli.client import AdminClient, ClientError
from channel.cli.options import add_settings_flags, settings_from_args
from channel.control.token_files import client_token, controller_tokens, url_token_path
from channel.errors import Problem, ValidationError
from channel.resources.manifests import Skipped, load_documents, parse_resource, resource_class
from channel.resources.model import Broker
from channel.runner import Service, configure_logging, run_service

__all__ = ["main"]

_GROUPS = {
    "Broker": "eventing.knative.dev",
    "Trigger": "eventing.knative.dev",
    "Channel": "messaging.knative.dev",
    "KafkaChannel": "messaging.knative.dev",
    "Subscription": "messaging.knative.dev",
    "PingSource": "sources.knative.dev",
}
_KINDS_HELP = "brokers, triggers, channels, kafkachannels, subscriptions, pingsources, sources"
_SOURCE_KINDS = ("PingSource",)


def _read_manifests(paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        if path == "-":
            sources = [("<stdin>", sys.stdin.read())]
        else:
            p = Path(path)
            if p.is_dir():
                files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
                sources = [(str(f), f.read_text()) for f in files]
            elif p.is_file():
                sources = [(str(p), p.read_text())]
            else:
                raise SystemExit(f"kanal: {path}: no such file or directory")
        for source, text in sources:
            for i, doc in enumerate(load_documents(text, source)):
                docs.append((f"{source} document {i + 1}", doc))
    return docs


def _eventing_documents(
    paths: list[str], namespace: str | None
) -> tuple[list[dict[str, Any]], list[Skipped | str]]:
    """Validate locally (every problem, with file names); split off other Kubernetes kinds. The
    notices: what was skipped, and warnings about fields Kanal takes but does not act on."""
    keep: list[dict[str, Any]] = []
    skipped: list[Skipped | str] = []
    problems: list[Problem] = []
    for where, doc in _read_manifests(paths):
        meta = doc.setdefault("metadata", {}) if isinstance(doc.get("metadata", {}), dict) else None
        if meta is not None and namespace and "namespace" not in meta:
            meta["namespace"] = namespace
        try:
            parsed = parse_resource(doc, where)
        except ValidationError as exc:
            problems.extend(exc.problems)
            continue
        if isinstance(parsed, Skipped):
            skipped.append(parsed)
            continue
        keep.append(doc)
        skipped.extend(
            f"Warning: {parsed.KIND} {parsed.metadata.namespace}/{parsed.metadata.name}: {path}.audience"
            " is not used: Kanal sends no OIDC token, so that destination must take requests without one"
            for path in _audiences(doc.get("spec"), "spec")
        )
        if isinstance(parsed, Broker) and parsed.spec.config:
            config = parsed.spec.config
            what = " ".join(str(config[k]) for k in ("kind", "namespace", "name") if config.get(k))
            skipped.append(
                f"Warning: Broker {parsed.metadata.namespace}/{parsed.metadata.name}: spec.config"
                f" ({what or 'given'}) is not read by Kanal; its topic is made with"
                " KANAL_KAFKA_TOPIC_PARTITIONS and KANAL_KAFKA_TOPIC_REPLICATION_FACTOR"
            )
    if problems:
        raise ValidationError(problems)
    return keep, skipped


def _audiences(node: Any, path: str) -> list[str]:
    """The paths of the destinations (a `uri` or `ref`) under `node` that name an OIDC audience."""
    if isinstance(node, list):
        return [found for i, item in enumerate(node) for found in _audiences(item, f"{path}[{i}]")]
    if not isinstance(node, dict):
        return []
    found = [path] if node.get("audience") and ("uri" in node or "ref" in node) else []
    return found + [hit for key, value in node.items() for hit in _audiences(value, f"{path}.{key}")]


def _client(args: argparse.Namespace) -> AdminClient:
    settings = settings_from_args(args)
    url = settings.public_controller_url()
    try:
        token = client_token(settings, os.environ)
    except ValueError as exc:
        raise SystemExit(f"kanal: {exc}") from None
    hint = url_token_path(url, os.environ)
    return AdminClient(url, token=token, token_hint=str(hint or "~/.config/kanal/tokens/HOST-PORT"))


def _cmd_apply(args: argparse.Namespace) -> int:
    docs, skipped = _eventing_documents(args.filename, args.namespace)
    for item in skipped:
        print(item, file=sys.stderr)
    if not docs:
        print("kanal: no eventing resources to apply", file=sys.stderr)
        return 0
    for result in _client(args).apply(docs):
        kind = result["kind"]
        print(f"{kind.lower()}.{_GROUPS.get(kind, 'knative.dev')}/{result['name']} {result['action']}")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    if args.filename:
        docs, _ = _eventing_documents(args.filename, args.namespace)
        targets = [
            {
                "kind": d["kind"],
                "namespace": d["metadata"].get("namespace", "default"),
                "name": d["metadata"]["name"],
            }
            for d in docs
        ]
    else:
        if not args.kind or not args.names:
            raise SystemExit("kanal delete: give KIND NAME... or -f FILE")
        model = resource_class(args.kind)
        if model is None:
            raise SystemExit(f"kanal: unknown kind {args.kind!r} ({_KINDS_HELP})")
        targets = [
            {"kind": model.KIND, "namespace": args.namespace or "default", "name": n} for n in args.names
        ]
    for result in _client(args).delete(targets):
        kind = result["kind"]
        print(f'{kind.lower()}.{_GROUPS.get(kind, "knative.dev")} "{result["name"]}" deleted')
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    from channel.cli.tables import render

    if args.kind.lower() in ("source", "sources"):
        client = _client(args)
        namespace = None if args.all_namespaces else (args.namespace or "default")
        docs = [doc for kind in _SOURCE_KINDS for doc in client.list(kind, namespace)]
        if args.name:
            docs = [d for d in docs if (d.get("metadata") or {}).get("name") == args.name]
        if not docs and args.output not in ("json", "yaml"):
            where = "any namespace" if namespace is None else f"{namespace} namespace"
            print(f"No resources found in {where}.", file=sys.stderr)
            return 0
        print(render("Sources", docs, args.output or "", args.all_namespaces))
        return 0
    model = resource_class(args.kind)
    if model is None:
        raise SystemExit(f"kanal: unknown kind {args.kind!r} ({_KINDS_HELP})")
    client = _client(args)
    namespace = None if args.all_namespaces else (args.namespace or "default")
    if args.name:
        docs = [client.get(model.KIND, namespace or "default", args.name)]
    else:
        docs = client.list(model.KIND, namespace)
    if not docs and args.output not in ("json", "yaml"):
        where = "any namespace" if namespace is None else f"{namespace} namespace"
        print(f"No resources found in {where}.", file=sys.stderr)
        return 0
    print(render(model.KIND, docs, args.output or "", args.all_namespaces))
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    from channel.cli.send import run_send

    return run_send(args, _client(args))


def _cmd_source(args: argparse.Namespace) -> int:
    from channel.cli.source import run_source

    return run_source(args, _client(args))


def _cmd_deadletters(args: argparse.Namespace) -> int:
    from channel.cli.deadletters import run_deadletters

    return run_deadletters(args, settings_from_args(args), _client(args))


def _cmd_replay(args: argparse.Namespace) -> int:
    from channel.cli.replay import run_replay_command

    return run_replay_command(args, settings_from_args(args), _client(args))


def _cmd_component(args: argparse.Namespace) -> int:
    from channel.kafka import access_denied, check_connection
    from channel.proxy import Proxies

    settings = settings_from_args(args)
    configure_logging(settings.log_level, settings.log_format)
    try:
        settings.bootstrap()
        Proxies.from_environment(os.environ)  # every component may send through it
    except ValueError as exc:
        raise SystemExit(f"kanal {args.command}: {exc}") from None
    factory: Callable[[], Service]
    scope = contextlib.ExitStack()  # what the component needs for as long as it runs
    if args.command == "controller":
        from channel.control.service import ControllerService

        try:
            tokens = scope.enter_context(controller_tokens(settings, os.environ))
        except ValueError as exc:
            raise SystemExit(f"kanal controller: {exc}") from None
        factory = partial(ControllerService, settings, tokens)
    elif args.command == "ingress":
        from ingress.service import IngressService

        factory = partial(IngressService, settings)
    else:
        from dispatcher.service import DispatcherService

        factory = partial(DispatcherService, settings)
    with scope:
        try:
            return run_service(factory, setup=partial(check_connection, settings))
        except Exception as exc:
            # Kafka refused Kanal (credentials, TLS, an ACL): configuration, said in one line.
            if (denied := access_denied(exc)) is None:
                raise
            logging.getLogger(__name__).error("kanal %s stopped: %s", args.command, denied)
            return 1


def _cmd_dev(args: argparse.Namespace) -> int:
    from channel.cli.dev import run_dev

    settings = settings_from_args(args)
    sinks = []
    for spec in args.sink:
        name, _, port = spec.partition("=")
        if not port.isdigit():
            raise SystemExit(f"kanal dev: --sink takes NAME=PORT, not {spec!r}")
        sinks.append((name, int(port)))
    return asyncio.run(run_dev(settings, args.apply, sinks))


def _cmd_display(args: argparse.Namespace) -> int:
    from aiohttp import web

    from channel.cli.display import create_display_app

    print(f"event-display listening on http://{args.host}:{args.port}/", flush=True)
    web.run_app(
        create_display_app(),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        handle_signals=True,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kanal", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole system locally on an embedded Kafka-protocol broker")
    dev.add_argument(
        "--apply",
        action="append",
        default=[],
        metavar="PATH",
        help="manifests to apply once everything is ready",
    )
    dev.add_argument(
        "--sink",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="also run an event-display sink",
    )
    add_settings_flags(dev)
    dev.set_defaults(func=_cmd_dev)

    for name, text in (
        ("controller", "run the controller (resources, topics, status, admin API)"),
        ("ingress", "run the HTTP ingress"),
        ("dispatcher", "run the dispatcher"),
    ):
        component = sub.add_parser(name, help=text)
        add_settings_flags(component)
        component.set_defaults(func=_cmd_component)

    apply = sub.add_parser("apply", help="create or update resources from YAML")
    apply.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR|-")
    apply.add_argument("-n", "--namespace", help="namespace for documents that name none")
    add_settings_flags(apply)
    apply.set_defaults(func=_cmd_apply)

    get = sub.add_parser("get", help="list resources")
    get.add_argument("kind", help=_KINDS_HELP)
    get.add_argument("name", nargs="?")
    get.add_argument("-n", "--namespace")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-o", "--output", choices=["json", "yaml"])
    add_settings_flags(get)
    get.set_defaults(func=_cmd_get)

    delete = sub.add_parser("delete", help="delete resources")
    delete.add_argument("kind", nargs="?")
    delete.add_argument("names", nargs="*")
    delete.add_argument("-f", "--filename", action="append", metavar="FILE|DIR|-")
    delete.add_argument("-n", "--namespace")
    add_settings_flags(delete)
    delete.set_defaults(func=_cmd_delete)

    from channel.cli.send import add_send_parser
    from channel.cli.source import add_source_parser

    send = add_send_parser(sub)
    add_settings_flags(send)
    send.set_defaults(func=_cmd_send)
    source = add_source_parser(sub)
    add_settings_flags(source)
    source.set_defaults(func=_cmd_source)

    from channel.cli.deadletters import add_deadletters_parser

    for p in add_deadletters_parser(sub):
        add_settings_flags(p)
        p.set_defaults(func=_cmd_deadletters)
    replay = sub.add_parser("replay", help="deliver a Trigger's events again from its Broker's log")
    replay_kinds = replay.add_subparsers(dest="replay_kind", required=True)
    replay_trigger = replay_kinds.add_parser("trigger", help="replay to a Trigger")
    replay_trigger.add_argument("name")
    replay_trigger.add_argument("-n", "--namespace", default="default")
    replay_trigger.add_argument(
        "--from",
        dest="start",
        required=True,
        help="RFC 3339 time, a duration ago (2h), an offset for every partition, or P:O,P:O",
    )
    replay_trigger.add_argument(
        "--to", dest="until", help="stop before this time (default: the log's end now)"
    )
    replay_trigger.add_argument("--dry-run", action="store_true", help="count what would be delivered")
    replay_trigger.add_argument("--concurrency", type=int, default=64)
    add_settings_flags(replay_trigger)
    replay_trigger.set_defaults(func=_cmd_replay)

    display = sub.add_parser("event-display", help="a sink that prints the CloudEvents it receives")
    display.add_argument("--port", type=int, default=8080)
    display.add_argument("--host", default="127.0.0.1")
    display.set_defaults(func=_cmd_display)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:
        print("kanal: invalid resources, nothing was applied:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"kanal: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
