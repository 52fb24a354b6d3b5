"""Command-line flags for settings: every Settings field is a flag of the same name.

`KANAL_INGRESS_PORT` in the environment and `--ingress-port` on the command line are the same
setting; a flag given wins over the environment.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from channel.settings import Settings

__all__ = ["add_settings_flags", "settings_from_args"]


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also KANAL_<NAME> in the environment)")
    for name, field in Settings.model_fields.items():
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest="setting_" + name,
            default=None,
            metavar="VALUE",
            help=field.description or f"KANAL_{name.upper()}",
        )


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    given = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_") and value is not None
    }
    given.update(extra)
    try:
        return Settings(**given)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"KANAL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise SystemExit(f"kanal: invalid settings: {problems}") from None
