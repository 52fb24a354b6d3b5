"""The `kanal` command: run components, and manage resources the way kubectl does.

kanal dev [--apply PATH]... [--sink NAME=PORT]...   everything on one machine
kanal controller | ingress | dispatcher             one component (as the Helm chart runs them)
kanal apply -f FILE|DIR|-                           create or update resources
kanal get KIND [NAME] [-n NS | -A] [-o json|yaml]   list resources (-w: watch for changes)
kanal describe KIND NAME [-n NS]                    one resource: status, statistics, lag
kanal tail broker|channel NAME [--filter CESQL]     live events, read from Kafka
kanal delete KIND NAME [-n NS] | -f FILE            delete resources
kanal send --broker NAME -n NS --type T --source S  post a CloudEvent
kanal source run --sink URL -- COMMAND...           run a program as an event source (K_SINK)
kanal replay trigger NAME -n NS --from TIME|OFFSET  deliver a Trigger's events again
kanal deadletters list|redrive --trigger NAME -n NS dead letters kept in a Kafka topic
kanal event-display [--port N]                      a sink that prints events
kanal completion bash|zsh                           the shell completion script

Run `kanal COMMAND --help` for a command's options and examples.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from channel.control.token_files import client_token, url_token_path
from channel.errors import ValidationError
from channel.resources.manifests import resource_class
from channel.settings import Settings
from kanal.cli.client import AdminClient, ClientError
from kanal.cli.completion import SHELLS, complete, completion_script
from kanal.cli.deadletters import add_deadletters_parser, run_deadletters
from kanal.cli.describe import KINDS as DESCRIBE_KINDS
from kanal.cli.describe import add_describe_parser, run_describe
from kanal.cli.eventtypes import KINDS as EVENTTYPE_KINDS
from kanal.cli.eventtypes import is_eventtype_kind, run_describe_eventtype, run_get_eventtypes
from kanal.cli.examples import add_examples
from kanal.cli.get import KINDS_HELP, run_get
from kanal.cli.manifests import eventing_documents
from kanal.cli.options import add_settings_flags, settings_from_args
from kanal.cli.replay import run_replay_command
from kanal.cli.send import add_send_parser, run_send
from kanal.cli.source import add_source_parser, run_source
from kanal.cli.tail import add_tail_parser, run_tail
from kanal.components import COMPONENTS
from kanal.local_kafka import local_kafka_path, read_local_kafka

__all__ = ["main"]

_GROUPS = {
    "Broker": "eventing.knative.dev",
    "Trigger": "eventing.knative.dev",
    "Channel": "messaging.knative.dev",
    "KafkaChannel": "messaging.knative.dev",
    "Subscription": "messaging.knative.dev",
    "PingSource": "sources.knative.dev",
}


def _client(args: argparse.Namespace) -> AdminClient:
    settings = settings_from_args(args)
    url = settings.public_controller_url()
    try:
        token = client_token(settings, os.environ)
    except ValueError as exc:
        raise SystemExit(f"kanal: {exc}") from None
    hint = url_token_path(url, os.environ)
    return AdminClient(url, token=token, token_hint=str(hint or "~/.config/kanal/tokens/HOST-PORT"))


def _reader_settings(args: argparse.Namespace) -> Settings:
    """Settings for a command that reads Kafka itself: without KANAL_KAFKA_BOOTSTRAP_SERVERS, the
    Kafka of the `kanal dev` run whose controller this is, if there is one (`kanal.local_kafka`)."""
    settings = settings_from_args(args)
    if settings.kafka_bootstrap_servers:
        return settings
    found = read_local_kafka(local_kafka_path(settings.public_controller_url(), os.environ))
    if found is None:
        return settings
    given = {
        k
        for k in found
        if getattr(args, f"setting_{k}", None) is not None or f"KANAL_{k.upper()}" in os.environ
    }
    return settings_from_args(args, **{k: v for k, v in found.items() if k not in given})


def _cmd_apply(args: argparse.Namespace) -> int:
    docs, skipped = eventing_documents(args.filename, args.namespace)
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
        docs, _ = eventing_documents(args.filename, args.namespace)
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
            raise SystemExit(f"kanal: unknown kind {args.kind!r} ({KINDS_HELP})")
        targets = [
            {"kind": model.KIND, "namespace": args.namespace or "default", "name": n} for n in args.names
        ]
    for result in _client(args).delete(targets):
        kind = result["kind"]
        print(f'{kind.lower()}.{_GROUPS.get(kind, "knative.dev")} "{result["name"]}" deleted')
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    if is_eventtype_kind(args.kind):
        return run_get_eventtypes(args, _reader_settings(args), _client(args))
    return run_get(args, _reader_settings(args), _client(args))


def _cmd_describe(args: argparse.Namespace) -> int:
    if is_eventtype_kind(args.kind):
        return run_describe_eventtype(args, _reader_settings(args), _client(args))
    return run_describe(args, _reader_settings(args), _client(args))


def _cmd_tail(args: argparse.Namespace) -> int:
    return run_tail(args, _reader_settings(args), _client(args))


def _cmd_completion(args: argparse.Namespace) -> int:
    print(completion_script(args.shell))
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    return run_send(args, _client(args))


def _cmd_source(args: argparse.Namespace) -> int:
    return run_source(args, _client(args))


def _cmd_deadletters(args: argparse.Namespace) -> int:
    return run_deadletters(args, _reader_settings(args), _client(args))


def _cmd_replay(args: argparse.Namespace) -> int:
    return run_replay_command(args, _reader_settings(args), _client(args))


def _cmd_component(args: argparse.Namespace) -> int:
    from kanal.components import run_component

    return run_component(args.command, settings_from_args(args))


def _cmd_dev(args: argparse.Namespace) -> int:
    from kanal.dev import run_dev  # imported only here: it starts the embedded broker

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

    from kanal.cli.display import create_display_app

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

    for name, text in COMPONENTS.items():
        component = sub.add_parser(name, help=text)
        add_settings_flags(component)
        component.set_defaults(func=_cmd_component)

    apply = sub.add_parser("apply", help="create or update resources from YAML")
    apply.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR|-")
    apply.add_argument("-n", "--namespace", help="namespace for documents that name none")
    add_settings_flags(apply)
    apply.set_defaults(func=_cmd_apply)

    get = sub.add_parser("get", help="list resources (with each Trigger's and Subscription's lag)")
    get.add_argument("kind", help=KINDS_HELP)
    get.add_argument("name", nargs="?")
    get.add_argument("-n", "--namespace")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-o", "--output", choices=["json", "yaml"])
    get.add_argument("-w", "--watch", action="store_true", help="after the table, print a line per change")
    get.add_argument(
        "--watch-limit", type=int, metavar="N", help="with -w: stop after N change lines (default: Ctrl-C)"
    )
    add_settings_flags(get)
    get.set_defaults(func=_cmd_get)

    DESCRIBE_KINDS.update(dict.fromkeys(EVENTTYPE_KINDS, "EventType"))  # kanal.cli.eventtypes
    describe = add_describe_parser(sub)
    describe.add_argument("--show-data", action="store_true", help="eventtype: an example event's data too")
    add_settings_flags(describe)
    describe.set_defaults(func=_cmd_describe)
    tail = add_tail_parser(sub)
    add_settings_flags(tail)
    tail.set_defaults(func=_cmd_tail)

    delete = sub.add_parser("delete", help="delete resources")
    delete.add_argument("kind", nargs="?")
    delete.add_argument("names", nargs="*")
    delete.add_argument("-f", "--filename", action="append", metavar="FILE|DIR|-")
    delete.add_argument("-n", "--namespace")
    add_settings_flags(delete)
    delete.set_defaults(func=_cmd_delete)

    send = add_send_parser(sub)
    add_settings_flags(send)
    send.set_defaults(func=_cmd_send)
    source = add_source_parser(sub)
    add_settings_flags(source)
    source.set_defaults(func=_cmd_source)

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

    completion = sub.add_parser("completion", help="print the shell completion script for bash or zsh")
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=_cmd_completion)
    add_examples(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    complete(parser)  # answers the shell's completion request and exits, when there is one
    args = parser.parse_args(argv)
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
