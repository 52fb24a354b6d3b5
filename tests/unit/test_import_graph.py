"""The packages' layering, read from the source: `channel` (the shared core) imports none of the
packages built on it, `ingress` and `dispatcher` never import each other, and only `kanal` (the
CLI and composition root) may import everything. Every import counts, including those inside
functions and `if TYPE_CHECKING:` blocks, since those are how a cycle hides."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> the first-party packages it must never import
FORBIDDEN = {
    "channel": {"ingress", "dispatcher", "kanal"},
    "ingress": {"dispatcher", "kanal"},
    "dispatcher": {"ingress", "kanal"},
}


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` (the text of `module`) imports, anywhere in it, relative imports
    resolved to absolute names."""
    found: set[str] = set()
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def _modules(package: str) -> list[tuple[str, Path]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        found.append((".".join(parts), path))
    assert found, f"no modules under {package}/"
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package: str) -> None:
    crossings = []
    for module, path in _modules(package):
        is_package = path.name == "__init__.py"
        name = module.removesuffix(".__init__")
        for imported in imported_modules(path.read_text(), name, is_package):
            if imported.split(".")[0] in FORBIDDEN[package]:
                crossings.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not crossings, "\n".join(sorted(set(crossings)))


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import a.b", "channel.x", {"a.b"}),
        ("def f():\n    from dispatcher.service import S\n", "channel.x", {"dispatcher.service"}),
        ("if TYPE_CHECKING:\n    import kanal\n", "channel.x", {"kanal"}),
        ("from .. import kafka", "channel.cli.main", {"channel", "channel.kafka"}),
        ("from .client import C", "channel.cli.main", {"channel.cli.client"}),
        ("class A:\n    def m(self):\n        import ingress.app\n", "channel.y", {"ingress.app"}),
    ],
    ids=["top-level", "in-a-function", "type-checking", "relative-parent", "relative-sibling", "in-a-method"],
)
def test_every_kind_of_import_is_seen(source: str, module: str, expected: set[str]) -> None:
    assert expected <= imported_modules(source, module)
