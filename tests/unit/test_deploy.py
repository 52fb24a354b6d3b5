"""The deployment artefacts stay true to the code: the Helm chart's values and schema, the
templates' references, docker-compose, the Dockerfile, alerts and dashboard.

This machine has neither helm nor a Docker engine, so these read the files; rendering with helm
runs when a `helm` binary is on PATH.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
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


# Settings the chart sets without a `config` value, and why; and those it leaves out.
SET_BY_TEMPLATES = {
    "host": "always 0.0.0.0 in a pod",
    "controller_url": "the controller Service",
    "kafka_sasl_username": "kafka.sasl.existingSecret",
    "kafka_sasl_password": "kafka.sasl.existingSecret",
    "kafka_ssl_cafile": "kafka.tls.existingSecret, mounted",
    "kafka_ssl_certfile": "kafka.tls.existingSecret, mounted",
    "kafka_ssl_keyfile": "kafka.tls.existingSecret, mounted",
    "ingress_auth_tokens_file": "ingress.auth.tokensSecret, mounted",
    "controller_token_file": "controller.token's Secret, mounted into the controller and the apply Job",
}
NOT_IN_CHART = {
    "ingress_tls_certfile": "HTTPS to the ingress is left to the cluster's Ingress or mesh",
    "ingress_tls_keyfile": "HTTPS to the ingress is left to the cluster's Ingress or mesh",
    "controller_token": "the chart passes the admin API's token as a file (controller.token)",
    "controller_host": "a pod binds KANAL_HOST; the ClusterIP Service keeps the admin API in the cluster",
}


def test_every_setting_is_in_the_chart_or_left_out_on_purpose() -> None:
    fields = set(Settings.model_fields)
    in_config = {_snake(name) for name in VALUES["config"]}
    env_in_templates = {
        m.group(1).lower() for text in TEMPLATES.values() for m in re.finditer(r"name: KANAL_([A-Z_]+)", text)
    }
    assert env_in_templates <= fields, f"templates set unknown settings: {env_in_templates - fields}"
    assert set(SET_BY_TEMPLATES) <= env_in_templates, set(SET_BY_TEMPLATES) - env_in_templates
    missing = fields - in_config - env_in_templates - set(NOT_IN_CHART)
    assert not missing, f"settings the chart neither sets nor lists in NOT_IN_CHART: {sorted(missing)}"
    assert not set(NOT_IN_CHART) & (in_config | env_in_templates)


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
    assert '"http://%s-ingress.%s.svc.cluster.local" (include "kanal.fullname" .)' in helpers
    notes = TEMPLATES["NOTES.txt"]
    assert '{{ include "kanal.ingressUrl" . }}/<namespace>/<broker>' in notes


def test_the_service_monitor_scrapes_the_ingress_metrics_port_not_its_events_port() -> None:
    services = {
        re.search(r"name: .*\}\}(-[a-z-]+)", doc).group(1): doc  # type: ignore[union-attr]
        for doc in TEMPLATES["services.yaml"].split("\n---\n")
    }
    assert set(services) == {"-ingress", "-ingress-metrics", "-controller", "-dispatcher"}
    scraped = {name for name, doc in services.items() if 'kanal.dev/metrics: "true"' in doc}
    assert scraped == {"-ingress-metrics", "-controller", "-dispatcher"}
    assert (
        "name: metrics" in services["-ingress-metrics"]
        and "targetPort: metrics" in services["-ingress-metrics"]
    )
    assert "name: metrics" not in services["-ingress"]
    monitor = TEMPLATES["servicemonitor.yaml"]
    assert 'kanal.dev/metrics: "true"' in monitor
    assert "- port: http" in monitor and "- port: metrics" in monitor
    assert "containerPort: {{ $root.Values.config.ingressMetricsPort }}" in TEMPLATES["_helpers.tpl"]


def _documents(template: str) -> dict[str, str]:
    """The documents of a template, by the part of their name after the release's."""
    return {
        re.search(r"name: .*\}\}(-[a-z-]+)", doc).group(1): doc  # type: ignore[union-attr]
        for doc in TEMPLATES[template].split("\n---\n")
    }


def test_the_admin_api_is_reached_inside_the_cluster_only_with_the_token_of_a_secret() -> None:
    controller = _documents("services.yaml")["-controller"]
    assert "type: ClusterIP" in controller and "nodePort" not in controller
    assert not any(re.search(r"^kind: Ingress\b", text, re.M) for text in TEMPLATES.values())
    # The Secret is made unless the user names one, with a random token kept across upgrades.
    secret = TEMPLATES["controller-token.yaml"]
    assert "{{- if not .Values.controller.token.existingSecret }}" in secret
    assert "randAlphaNum 48" in secret and 'lookup "v1" "Secret"' in secret
    assert VALUES["controller"]["token"] == {"existingSecret": "", "key": "token"}
    # Mounted, with KANAL_CONTROLLER_TOKEN_FILE, in the controller (no other component) and the Job.
    helpers = TEMPLATES["_helpers.tpl"]
    setting = "- name: KANAL_CONTROLLER_TOKEN_FILE\n"
    assert helpers.count(setting) == 1
    assert '{{- if eq .component "controller" }}\n            ' + setting in helpers
    assert helpers.count('secretName: {{ include "kanal.controllerTokenSecret" $root }}') == 1
    job = TEMPLATES["resources.yaml"]
    assert setting in job and 'secretName: {{ include "kanal.controllerTokenSecret" . }}' in job
    assert "KANAL_CONTROLLER_TOKEN=" in TEMPLATES["NOTES.txt"]
    assert VALUES["config"]["controllerOpenReads"] is False


def test_the_settings_configmap_writes_numbers_as_json() -> None:
    # Helm reads numbers from values files as floats; toString writes 1048576 as "1.048576e+06",
    # which the integer settings refuse. toJson writes "1048576".
    line = next(x for x in TEMPLATES["configmap.yaml"].splitlines() if x.strip().startswith("KANAL_"))
    assert "toJson" in line and 'kindIs "string"' in line


HELM_VALUES = {
    "resources": [
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "b", "namespace": "ns"},
        }
    ],
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
    "config": {
        "kafkaSecurityProtocol": "SASL_SSL",
        "kafkaSaslMechanism": "SCRAM-SHA-512",
        "ingressAuth": "tokens",
        "ingressMaxBodyBytes": 20_000_000,
        "dispatcherCommitInterval": 0.5,
    },
    "ingress": {"autoscaling": {"enabled": True}, "auth": {"tokensSecret": "tokens"}},
    "kafka": {"sasl": {"existingSecret": "s"}, "tls": {"existingSecret": "t", "clientCertificate": True}},
}


def _container_settings(configmap: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    env = dict(configmap["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "from-a-secret")
    return env


@pytest.mark.skipif(shutil.which("helm") is None, reason="no helm binary on PATH (not installable here)")
def test_helm_renders_the_chart(tmp_path: Path) -> None:  # pragma: no cover - needs helm
    """`helm template` with every option on: each component's environment is a valid Settings."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(HELM_VALUES))
    out = subprocess.run(
        ["helm", "template", "kanal", str(CHART), "--namespace", "ops", "-f", str(values)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for kind in (
        "Deployment",
        "Service",
        "ConfigMap",
        "Job",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PrometheusRule",
    ):
        assert kind in by_kind, kind
    configmaps = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    settings_map = configmaps["kanal-settings"]
    assert settings_map["data"]["KANAL_INGRESS_MAX_BODY_BYTES"] == "20000000"
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    assert set(deployments) == {f"kanal-{c}" for c in COMPONENTS}
    assert "replicas" not in deployments["kanal-ingress"]["spec"]  # the HPA owns it
    for component in COMPONENTS:
        pod = deployments[f"kanal-{component}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == [component]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        env = _container_settings(settings_map, container)
        settings = Settings(**{k.removeprefix("KANAL_").lower(): v for k, v in env.items()})
        assert container["ports"][0]["containerPort"] == getattr(settings, f"{component}_port")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ("metrics" in ports) == (component == "ingress")
        assert ports.get("metrics", settings.ingress_metrics_port) == settings.ingress_metrics_port
        assert settings.kafka_ssl_cafile == "/etc/kanal/kafka-tls/ca.crt"
        assert settings.public_ingress_url() == "http://kanal-ingress.ops.svc.cluster.local"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tmp", "/etc/kanal/kafka-tls"} <= mounts
        assert (settings.ingress_auth_tokens_file is not None) == (component == "ingress")
        assert (settings.controller_token_file is not None) == (component == "controller")
        assert ("/etc/kanal/controller-token" in mounts) == (component == "controller")
    (job,) = by_kind["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["apply", "-f"]
    job_env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert job_env["KANAL_CONTROLLER_TOKEN_FILE"] == "/etc/kanal/controller-token/token"
    (secret,) = [s for s in by_kind["Secret"] if s["metadata"]["name"] == "kanal-controller-token"]
    assert token_problem(base64.b64decode(secret["data"]["token"]).decode()) is None
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    assert services["kanal-controller"]["spec"]["type"] == "ClusterIP"
    applied = list(yaml.safe_load_all(configmaps["kanal-resources"]["data"]["resources.yaml"]))
    assert [d for d in applied if d] == HELM_VALUES["resources"]
    dashboard = next(c for c in by_kind["ConfigMap"] if "grafana_dashboard" in c["metadata"]["labels"])
    assert json.loads(dashboard["data"]["kanal.json"])["panels"]


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


def test_dockerfile_is_multi_stage_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["kanal"\]', text, re.M)
