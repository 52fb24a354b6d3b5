"""The documentation site: it builds with `mkdocs build --strict`, its generated references match
the code, every shipped alert has a runbook entry, every package in pyproject.toml is on the
Dependencies page, and the README stays a short front page.

The build runs MkDocs as a user would (`python -m mkdocs`, into a temporary directory), and a copy
of the site with one broken link shows that --strict really fails on one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from channel.settings import Settings
from support import docs_gen

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RULES = ROOT / "charts" / "kanal" / "files" / "kanal-rules.yml"
RUNBOOKS = DOCS / "operations.md"
README = ROOT / "README.md"
# Material for MkDocs prints a notice about MkDocs 2.0 on every build; it is not a finding.
_ENV = dict(os.environ, NO_MKDOCS_2_WARNING="1")


@pytest.fixture(scope="module")
def mkdocs() -> list[str]:
    """The command that runs MkDocs. It comes with the `test` extra; without it the site cannot be
    checked, which fails under CI and skips elsewhere."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        why = "mkdocs and mkdocs-material are not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return [sys.executable, "-m", "mkdocs"]


def _build(mkdocs: list[str], config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mkdocs, "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        env=_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_site_builds_with_strict(mkdocs: list[str], tmp_path: Path) -> None:
    result = _build(mkdocs, ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = [page for page in DOCS.rglob("*.md")]
    for page in pages:
        relative = page.relative_to(DOCS).with_suffix("")
        built = tmp_path / "site" / relative / "index.html" if relative.name != "index" else None
        if built is not None:
            assert built.exists(), f"{page} was not built"
    # Every page is in the navigation, so none is reachable only by a link.
    listed = set(re.findall(r"[\w/-]+\.md", str(config["nav"])))
    assert listed == {str(page.relative_to(DOCS)) for page in pages}


def test_a_broken_link_fails_the_build(mkdocs: list[str], tmp_path: Path) -> None:
    """The check above can fail: the same site with one link to a page that does not exist."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    result = _build(mkdocs, tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stdout + result.stderr


def test_the_generated_references_match_the_code() -> None:
    """`python -m support.docs_gen --check`, as a user runs it; on a difference it names the
    command that regenerates the pages."""
    result = subprocess.run(
        [sys.executable, "-m", "support.docs_gen", "--check"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "tests")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_drifted_reference_is_found(tmp_path: Path) -> None:
    """The check above can fail: a committed page one line off from the code."""
    for name in docs_gen.PAGES:
        shutil.copy(DOCS / "reference" / name, tmp_path / name)
    page = tmp_path / "configuration.md"
    page.write_text(page.read_text().replace("`KANAL_INGRESS_PORT`", "`KANAL_INGRESS_PORTS`", 1))
    problems = docs_gen.check(tmp_path)
    assert len(problems) == 1
    assert "KANAL_INGRESS_PORTS" in problems[0] and "configuration.md" in problems[0]


def test_the_references_say_what_the_code_has() -> None:
    """Spot checks that the generator reads the real sources, not a copy of its own."""
    configuration = (DOCS / "reference" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`KANAL_{name.upper()}`" in configuration
    cli = (DOCS / "reference" / "cli.md").read_text()
    for command in ("kanal apply", "kanal get", "kanal replay trigger", "kanal deadletters redrive"):
        assert f"## `{command}`" in cli
    metrics = (DOCS / "reference" / "metrics.md").read_text()
    assert (
        "| `kanal_dispatcher_consumer_lag` | gauge | `namespace`, `kind`, `parent`, `trigger`, `partition` |"
        in metrics
    )


def _alerts() -> list[dict[str, object]]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_shipped_alert_has_a_runbook_entry() -> None:
    text = RUNBOOKS.read_text()
    headings = set(re.findall(r"^### (\w+)$", text, re.M))
    alerts = _alerts()
    assert alerts, f"{RULES} has no alerts"
    for alert in alerts:
        name = str(alert["alert"])
        assert name in headings, f"alert {name} has no runbook entry (### {name}) in {RUNBOOKS}"
        annotations = alert.get("annotations") or {}
        assert isinstance(annotations, dict)
        url = annotations.get("runbook_url")
        if url is not None:
            assert re.search(rf"operations(\.md|/|\.html)?#{name.lower()}$", str(url)), (
                f"alert {name}'s runbook_url {url} does not point at its entry in {RUNBOOKS}"
            )


def test_the_readme_is_a_short_front_page() -> None:
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    # The two set-up commands come first, as .ci/run and a fresh clone use them.
    first = [line for line in lines[1:] if line.strip()][:4]
    assert first[0] == "```sh"
    assert first[1].startswith("make demo ") and first[2].startswith("make test ")
    # Every local link points at a file that exists.
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def _requirement_name(requirement: str) -> str:
    """`pyjwt[crypto]>=2.13.0` -> `pyjwt`; `uvloop>=0.19; sys_platform != 'win32'` -> `uvloop`."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower()


def test_every_dependency_is_on_the_dependencies_page() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    page = (DOCS / "dependencies.md").read_text().lower()
    missing = sorted({name for name in map(_requirement_name, requirements) if f"`{name}`" not in page})
    assert not missing, f"docs/dependencies.md does not say why Kanal depends on {missing}"
