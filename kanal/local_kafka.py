"""Where the CLI on this machine finds the Kafka of a `kanal dev` run, as it finds its admin API
token: `kanal dev` writes the Kafka settings of its run (the bootstrap servers it
started or was given, and whether the broker takes idempotent producers) as a small JSON object to
a per-user file named after the controller's host and port, `~/.config/kanal/kafka/localhost-PORT`
(XDG_CONFIG_HOME; 0600), and removes it when it stops. The commands that read Kafka themselves
(`describe`, `tail`, `get`'s LAG, `replay`, `deadletters`) use it when
KANAL_KAFKA_BOOTSTRAP_SERVERS is not set; the components never do.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from channel.control.token_files import url_token_path, write_local_token

__all__ = [
    "KEYS",
    "MAX_BYTES",
    "local_kafka_path",
    "read_local_kafka",
    "remove_local_kafka",
    "write_local_kafka",
]

MAX_BYTES: Final = 4096  # a few settings; a larger file is not one of these


def local_kafka_path(controller_url: str, environ: Mapping[str, str]) -> Path | None:
    """The file for the controller at `controller_url` (beside its token file); None for a bad URL."""
    token = url_token_path(controller_url, environ)
    return None if token is None else token.parent.parent / "kafka" / token.name


# The only settings the file may give (a file with others is not used).
KEYS: Final = frozenset({"kafka_bootstrap_servers", "kafka_idempotence"})


def write_local_kafka(path: Path, settings: Mapping[str, str]) -> None:
    write_local_token(path, json.dumps(dict(settings), sort_keys=True))  # the same private, atomic write


def remove_local_kafka(path: Path, settings: Mapping[str, str]) -> None:
    """Remove `path` if it still holds `settings` (a later `kanal dev` may have replaced it)."""
    if read_local_kafka(path) == dict(settings):
        with contextlib.suppress(OSError):
            path.unlink()


def read_local_kafka(path: Path | None) -> dict[str, str] | None:
    """The settings in `path`, or None when there is no usable file."""
    if path is None:
        return None
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
        found = json.loads(raw) if len(raw) <= MAX_BYTES else None
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or not found or set(found) - KEYS:
        return None
    if not all(isinstance(value, str) for value in found.values()):
        return None
    return found
