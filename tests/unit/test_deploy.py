"""The deployment artefacts stay true to the code: the Helm chart's values and schema, the
templates' references, docker-compose, the Dockerfile, alerts and dashboard.

This machine has neither helm nor a Docker engine, so these read the files; rendering with helm
runs when a `helm` binary is on PATH.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from channel.cli.main import build_parser
from channel.resources.manifests import Skipped, load_documents, parse_resource
from channel.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kanal"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TEMPLATES = {p.name: p.read_text() for p in (CHART / "templates").iterdir()}
COMPONENTS = ("controller", "ingress", "dispatcher")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


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


def test_every_config_value_is_a_kanal_setting() -> None:
    fields = set(Settings.model_fields)
    for name in VALUES["config"]:
        assert _snake(name) in fields, f"config.{name} is no setting (KANAL_{_snake(name).upper()})"
    assert set(SCHEMA["properties"]["config"]["properties"]) == set(VALUES["config"])


def test_config_values_are_valid_settings() -> None:
    """The chart's defaults, as the ConfigMap passes them (empty values left out), are accepted."""
    given = {_snake(k): v for k, v in VALUES["config"].items() if str(v) != ""}
    Settings(**given)


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


def test_probes_security_and_the_ingress_url_pattern() -> None:
    helpers = TEMPLATES["_helpers.tpl"]
    assert "path: /healthz" in helpers and "path: /readyz" in helpers
    assert VALUES["securityContext"]["readOnlyRootFilesystem"] is True
    assert VALUES["podSecurityContext"]["runAsNonRoot"] is True
    assert "mountPath: /tmp" in helpers  # the only writable place
    notes = TEMPLATES["NOTES.txt"]
    assert "-ingress.{{ .Release.Namespace }}.svc.cluster.local/<namespace>/<broker>" in notes


@pytest.mark.skipif(shutil.which("helm") is None, reason="no helm binary on PATH (not installable here)")
def test_helm_renders_the_chart(tmp_path: Path) -> None:  # pragma: no cover - needs helm
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "resources": [
                    {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "b"}}
                ],
                "metrics": {
                    "serviceMonitor": {"enabled": True},
                    "prometheusRule": {"enabled": True},
                    "grafanaDashboard": {"enabled": True},
                },
                "ingress": {"autoscaling": {"enabled": True}},
                "kafka": {
                    "sasl": {"existingSecret": "s"},
                    "tls": {"existingSecret": "t", "clientCertificate": True},
                },
            }
        )
    )
    out = subprocess.run(
        ["helm", "template", "kanal", str(CHART), "-f", str(values)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    for kind in (
        "Deployment",
        "Service",
        "ConfigMap",
        "Job",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ):
        assert kind in kinds


# -- alerts and dashboard --------------------------------------------------------------------


def _kanal_metric_names() -> set[str]:
    from prometheus_client.metrics import MetricWrapperBase

    import dispatcher.metrics
    import ingress.metrics

    names: set[str] = set()
    for module in (ingress.metrics, dispatcher.metrics):
        for value in vars(module).values():
            if not isinstance(value, MetricWrapperBase):
                continue
            for family in value.describe():
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
    return {name: s for name, s in COMPOSE["services"].items() if s.get("image") == "kanal:dev"}


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
        published = {int(p.split(":")[1]) for p in service["ports"]}
        assert published == {port}, component
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{c}:{services[c]['environment'].get(f'KANAL_{c.upper()}_PORT')}" for c in COMPONENTS}
    for service in COMPOSE["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), source


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


def test_dockerfile_is_multi_stage_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["kanal"\]', text, re.M)
