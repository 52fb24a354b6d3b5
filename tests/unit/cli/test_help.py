"""Every `kanal` command has a help line and examples, and the completion scripts complete it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from kanal.cli.completion import SHELLS, completion_script
from kanal.cli.examples import EXAMPLES, commands
from kanal.cli.main import build_parser

PARSER = build_parser()
COMMANDS = dict(commands(PARSER))


def _help_lines(parser: object) -> dict[str, str]:
    """The help line of each subcommand of `parser`, by name."""
    found: dict[str, str] = {}
    for action in getattr(parser, "_actions", ()):
        for choice in getattr(action, "_choices_actions", ()):
            found[choice.dest] = choice.help or ""
    return found


def test_the_walk_finds_every_command() -> None:
    assert {"", "get", "describe", "tail", "completion", "replay trigger", "deadletters redrive"} <= set(
        COMMANDS
    )
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=lambda w: w or "kanal")
def test_every_command_has_help_and_an_example(words: str) -> None:
    command = COMMANDS[words]
    if words:
        *parent, name = words.split(" ")
        assert _help_lines(COMMANDS[" ".join(parent)]).get(name), f"`kanal {words}` has no help line"
    text = command.format_help()
    assert "examples:\n  kanal " in text or "examples:\n  KANAL_" in text or "examples:\n  source " in text
    assert all(line in text for line in EXAMPLES[words])


def test_examples_name_only_commands_that_exist() -> None:
    assert set(EXAMPLES) == set(COMMANDS)


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_script_is_printed(shell: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kanal", "completion", shell], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == completion_script(shell) + "\n"
    assert "kanal" in result.stdout


def test_an_unknown_shell_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kanal", "completion", "fish"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "invalid choice: 'fish'" in result.stderr


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("kanal des", {"describe"}),
        ("kanal describe ", {"broker", "brokers", "channel", "channels", "subscription", "trigger"}),
        ("kanal tail broker x --fil", {"--filter"}),
        ("kanal get triggers --wa", {"--watch", "--watch-limit"}),
    ],
    ids=["command", "kind", "option", "watch"],
)
def test_bash_completes_from_the_parser(line: str, expected: set[str]) -> None:
    """Real bash sources `kanal completion bash` and asks it, as Tab would."""
    bash = shutil.which("bash")
    if bash is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bash is missing")
        pytest.skip("bash is not installed")
    kanal = shutil.which("kanal", path=os.path.dirname(sys.executable))
    assert kanal, "the kanal console script is not installed beside this Python"
    script = f"""
source <({kanal} completion bash)
COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_python_argcomplete {kanal}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{os.path.dirname(kanal)}:{os.environ.get('PATH', '')}"}
    result = subprocess.run([bash, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    offered = {word.strip() for word in result.stdout.split()}
    assert expected <= offered, (result.stdout, result.stderr)


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=lambda w: w or "kanal")
def test_usage_stands_for_the_settings_flags_once(words: str) -> None:
    command = COMMANDS[words]
    usage = command.format_usage()
    takes_settings = any(action.dest.startswith("setting_") for action in command._actions)
    assert "--kafka-bootstrap-servers" not in usage and "--ingress-port" not in usage
    assert ("[--<setting> VALUE]" in usage) == takes_settings
    if takes_settings:
        # still listed, and still taken, in full
        assert "--kafka-bootstrap-servers VALUE" in command.format_help()


def test_a_settings_flag_is_still_parsed_after_the_usage_change() -> None:
    args = PARSER.parse_args(["get", "brokers", "--kafka-bootstrap-servers", "127.0.0.1:1"])
    assert args.setting_kafka_bootstrap_servers == "127.0.0.1:1"
