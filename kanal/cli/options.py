"""Command-line flags for settings: every Settings field is a flag of the same name.

`KANAL_INGRESS_PORT` in the environment and `--ingress-port` on the command line are the same
setting; a flag given wins over the environment.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from channel.settings import Settings

__all__ = ["HelpFormatter", "add_settings_flags", "settings_from_args"]

_SETTING = "setting_"  # the dest prefix of every settings flag

# Stands for all of them in a usage line.
_ANY_SETTING = argparse.Action(option_strings=["--<setting>"], dest="any_setting", metavar="VALUE")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help as written (descriptions and examples keep their lines), with a usage line that
    shows `[--<setting> VALUE]` once instead of every one of the dozens of settings flags, which
    `--help` lists in a section of their own."""

    def add_usage(
        self,
        usage: str | None,
        actions: Any,
        groups: Any,
        prefix: str | None = None,
    ) -> None:
        actions = list(actions)
        kept = [action for action in actions if not action.dest.startswith(_SETTING)]
        if len(kept) != len(actions):
            last_optional = max((i for i, action in enumerate(kept) if action.option_strings), default=-1)
            kept.insert(last_optional + 1, _ANY_SETTING)
        super().add_usage(usage, kept, groups, prefix)


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also KANAL_<NAME> in the environment)")
    for name, field in Settings.model_fields.items():
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=_SETTING + name,
            default=None,
            metavar="VALUE",
            help=field.description or f"KANAL_{name.upper()}",
        )


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    given = {
        key.removeprefix(_SETTING): value
        for key, value in vars(args).items()
        if key.startswith(_SETTING) and value is not None
    }
    given.update(extra)
    try:
        return Settings(**given)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"KANAL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise SystemExit(f"kanal: invalid settings: {problems}") from None
