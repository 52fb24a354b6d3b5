"""The values reference of charts/kanal/README.md, made from values.yaml and values.schema.json.

    PYTHONPATH=tests .venv/bin/python -m support.values_doc           # rewrite the README's table
    PYTHONPATH=tests .venv/bin/python -m support.values_doc --check   # exit 1 if it would change

Each value of values.yaml is a row, under the heading of its top-level key: its dotted name, its
type and bounds from the schema, its default as values.yaml has it, and what it does from the
comment right above it in values.yaml (else the schema's description; a `config` value, which is
a Kanal setting, also names its environment variable). A map is a row of its own only when it
has a comment; its values are rows. The README holds the table between two markers and nothing
else there is touched, so the rest of it is written by hand.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["BEGIN", "END", "README", "Row", "render", "rows", "updated"]

CHART = Path(__file__).resolve().parents[2] / "charts" / "kanal"
README = CHART / "README.md"
BEGIN = "<!-- values reference: made by tests/support/values_doc.py, do not edit -->"
END = "<!-- end of the values reference -->"
COMMAND = "PYTHONPATH=tests .venv/bin/python -m support.values_doc"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?:\s|$)")


@dataclass(frozen=True)
class Row:
    """One value of the reference."""

    key: str  # dotted: ingress.autoscaling.enabled
    type: str
    default: str
    description: str


def comments(text: str) -> dict[str, str]:
    """The comment right above each key of a values file (no blank line between), by dotted key;
    a comment line indented deeper than its first (an example) stays code."""
    found: dict[str, str] = {}
    pending: list[str] = []
    path: list[tuple[int, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
        elif stripped.startswith("#"):
            pending.append(stripped[1:])
        elif match := _KEY.match(line):
            indent = len(match["indent"])
            path = [(i, k) for i, k in path if i < indent] + [(indent, match["key"])]
            if pending:
                found[".".join(k for _, k in path)] = _prose(pending)
            pending = []
        else:
            pending = []
    return found


def _prose(lines: list[str]) -> str:
    """Comment lines as one Markdown line: text joined, deeper-indented lines as code."""
    margin = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
    parts = []
    for line in lines:
        text = line[margin:]
        parts.append(f"`{text.strip()}`" if text.startswith(" ") else text.strip())
    return " ".join(parts)


def _schema_at(schema: dict[str, Any], key: str) -> dict[str, Any]:
    node = schema
    for part in key.split("."):
        node = node.get("properties", {}).get(part, {})
    return node


def _type(node: dict[str, Any]) -> str:
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        return " or ".join(_type(alternative) for alternative in alternatives)
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " | ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kinds = node.get("type", "any")
    kind = " or ".join(kinds) if isinstance(kinds, list) else kinds
    if kind == "array" and "items" in node:
        kind = f"list of {node['items'].get('type', 'any')}"
    bounds = [
        f"{word} {node[name]}"
        for name, word in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("minLength", "length ≥"),
        )
        if name in node and not (name == "minLength" and node[name] == 0)
    ]
    if "pattern" in node:
        bounds.append(f"matching `{node['pattern']}`")
    return ", ".join([kind, *bounds])


def _default(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    """Text for a table cell: a | would end the cell, in code spans too (GitHub's tables), and
    outside code spans <name> would be taken for HTML."""
    parts = text.split("`")
    parts[::2] = [part.replace("<", "&lt;").replace(">", "&gt;") for part in parts[::2]]
    return re.sub(r"(?<!\\)\|", r"\\|", "`".join(parts))


def _has_values(node: dict[str, Any]) -> bool:
    """Whether a map is a row per value: one whose schema names values that are not themselves
    Kubernetes objects (resources' requests and limits, a security context) is one row."""
    properties = node.get("properties", {}).values()
    return any(child.get("type") != "object" or "properties" in child for child in properties)


def _variable(key: str) -> str:
    """A config value's environment variable: config.kafkaTopicPrefix is KANAL_KAFKA_TOPIC_PREFIX."""
    return "KANAL_" + re.sub(r"(?<!^)(?=[A-Z])", "_", key.removeprefix("config.")).upper()


def rows(values_text: str, schema: dict[str, Any]) -> list[Row]:
    """Every row of the reference, in the order of values.yaml."""
    notes = comments(values_text)
    out: list[Row] = []

    def walk(prefix: str, tree: dict[str, Any]) -> None:
        for name, value in tree.items():
            key = f"{prefix}{name}"
            node = _schema_at(schema, key)
            description = notes.get(key) or node.get("description", "")
            if key.startswith("config."):
                description = f"`{_variable(key)}`. {description}".strip()
            if isinstance(value, dict) and value and _has_values(node):
                if key in notes:
                    out.append(Row(key, _type(node), "", description))
                walk(f"{key}.", value)
            else:
                out.append(Row(key, _type(node), _default(value), description))

    walk("", yaml.safe_load(values_text))
    return out


def render(values_text: str, schema: dict[str, Any]) -> str:
    """The reference: a table per top-level value, its comment above the table."""
    notes = comments(values_text)
    sections: dict[str, list[Row]] = {}
    for row in rows(values_text, schema):
        sections.setdefault(row.key.split(".")[0], []).append(row)
    out = [BEGIN, ""]
    for top, section in sections.items():
        out += [f"### {top}", ""]
        if top in notes and len(section) > 1:
            out += [_cell(notes[top]), ""]
        out += ["| Value | Type | Default | Description |", "| --- | --- | --- | --- |"]
        for row in section:
            if row.key == top and len(section) > 1:
                continue  # said above the table
            cells = (f"`{row.key}`", row.type, row.default, row.description)
            out.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        out.append("")
    return "\n".join([*out, END])


def updated(readme: str, values_text: str, schema: dict[str, Any]) -> str:
    """The README with its reference made anew between the markers."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"{README} has no values reference markers ({BEGIN} ... {END})")
    head, rest = readme.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return head + render(values_text, schema) + tail


def main(argv: list[str]) -> int:
    values_text = (CHART / "values.yaml").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    current = README.read_text()
    new = updated(current, values_text, schema)
    if "--check" in argv:
        if new != current:
            diff = difflib.unified_diff(
                current.splitlines(), new.splitlines(), "README.md", "made", lineterm=""
            )
            print("\n".join(diff), f"\n{README} is out of date: run {COMMAND}", sep="\n", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
