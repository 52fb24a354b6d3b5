"""Examples for every `kanal` command, shown at the end of its `--help` (and in the generated CLI
reference). One table, by the command's words, so a command cannot be added without them:
`add_examples` fails on a command that has none, and a unit test walks every command.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Final

from kanal.cli.options import HelpFormatter

__all__ = ["EXAMPLES", "add_examples", "commands"]

EXAMPLES: Final[dict[str, tuple[str, ...]]] = {
    "": (
        "kanal dev --apply examples/getting-started",
        "kanal get triggers -A",
        "kanal describe trigger hello",
    ),
    "dev": (
        "kanal dev",
        "kanal dev --apply examples/getting-started --sink hello-display=9001",
        "KANAL_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 kanal dev --apply my-triggers/",
    ),
    "controller": (
        "KANAL_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 KANAL_CONTROLLER_TOKEN_FILE=/run/token kanal controller",
    ),
    "ingress": ("KANAL_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 kanal ingress",),
    "dispatcher": ("KANAL_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 kanal dispatcher",),
    "apply": (
        "kanal apply -f broker.yaml",
        "kanal apply -f examples/getting-started/",
        "cat trigger.yaml | kanal apply -f - -n shop",
    ),
    "get": (
        "kanal get brokers",
        "kanal get triggers -n shop                  # with each Trigger's LAG",
        "kanal get triggers -A -w                    # the table, then a line per change",
        "kanal get trigger hello -o yaml",
    ),
    "describe": (
        "kanal describe trigger hello -n default",
        "kanal describe broker default",
        "kanal describe subscription audit -n shop",
    ),
    "tail": (
        "kanal tail broker default",
        "kanal tail broker default -n shop --filter \"type = 'order.created' AND amount > 100\"",
        "kanal tail channel audit -o json | jq .type",
        "kanal tail broker default --since 10m --max-events 20",
    ),
    "delete": ("kanal delete trigger hello -n default", "kanal delete -f examples/getting-started/"),
    "send": (
        'kanal send --broker default --type greeting --source cli --data \'{"msg": "hi"}\'',
        "kanal send --channel orders -n shop --type order.created --source shop --data @order.json",
        "kanal send --url http://127.0.0.1:9001/ --type t --source s --structured",
    ),
    "source": ("kanal source run --sink broker:default/default -- ./my-source",),
    "source run": (
        "kanal source run --sink broker:default/default -- ./my-source --interval 5",
        "kanal source run --sink http://127.0.0.1:9001/ --ce-override team=payments -- python emit.py",
    ),
    "deadletters": (
        "kanal deadletters list --trigger orders -n shop",
        "kanal deadletters redrive --trigger orders -n shop --since 2h",
    ),
    "deadletters list": (
        "kanal deadletters list --trigger orders -n shop",
        "kanal deadletters list --topic shop.orders.dead --type order.created -o json",
    ),
    "deadletters redrive": (
        "kanal deadletters redrive --trigger orders -n shop --dry-run",
        "kanal deadletters redrive --trigger orders -n shop --since 2h --until 1h",
    ),
    "replay": ("kanal replay trigger hello --from 2h",),
    "replay trigger": (
        "kanal replay trigger hello -n default --from 2h",
        "kanal replay trigger hello --from 2026-11-25T10:00:00Z --to 2026-11-25T11:00:00Z",
        "kanal replay trigger hello --from 0:120,1:98 --dry-run",
    ),
    "event-display": ("kanal event-display --port 9001",),
    "completion": (
        "source <(kanal completion bash)            # in ~/.bashrc",
        "source <(kanal completion zsh)             # in ~/.zshrc",
    ),
}


def commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command of `parser` with its words ("" for `kanal` itself), parents first."""
    yield " ".join(words), parser
    # argparse has no public way to list subcommands; _actions and _SubParsersAction are stable
    # since Python 3.2, and tests/unit/cli/test_help.py fails if they move.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*words, name))


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Give every command its examples as the end of its `--help`."""
    for words, command in commands(parser):
        lines = EXAMPLES.get(words)
        if not lines:
            raise LookupError(f"`kanal {words}` has no examples in kanal.cli.examples")
        examples = "\n".join(f"  {line}" for line in lines)
        command.epilog = f"{command.epilog}\n\n" if command.epilog else ""
        command.epilog += f"examples:\n{examples}"
        command.formatter_class = HelpFormatter
