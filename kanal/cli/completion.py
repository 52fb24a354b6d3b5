"""Shell completion for bash and zsh, through argcomplete: `kanal completion bash|zsh` prints
the script a shell sources once, and every later Tab runs `kanal` with the words typed so far,
which `complete` answers from the argument parser (commands, options, choices) before exiting.

    source <(kanal completion bash)          # bash, e.g. in ~/.bashrc
    source <(kanal completion zsh)           # zsh, e.g. in ~/.zshrc
"""

from __future__ import annotations

import argparse
from typing import Final

import argcomplete

__all__ = ["SHELLS", "complete", "completion_script"]

SHELLS: Final = ("bash", "zsh")


def completion_script(shell: str) -> str:
    """What `kanal completion SHELL` prints."""
    if shell not in SHELLS:
        raise ValueError(f"no completion for {shell!r} (one of {', '.join(SHELLS)})")
    return str(argcomplete.shellcode(["kanal"], shell=shell))


def complete(parser: argparse.ArgumentParser) -> None:
    """When the shell asks for completions (argcomplete's environment is set), write them and
    exit; otherwise return at once."""
    argcomplete.autocomplete(parser)
