"""The Helm chart as a real helm renders it: `helm lint --strict` and `helm template` with the
default values and with each values file of charts/kanal/examples, every manifest validated
against the Kubernetes schemas of the oldest version the chart's kubeVersion admits and of the
newest kubernetes-validate bundles (and the Prometheus Operator's CRDs), and the rendered
objects checked against the code: each component's environment is a valid Settings, probes and
Services reach the ports it listens on, the ServiceMonitor scrapes its metrics ports, every
mount and reference resolves.

helm is built once from the Go module proxy (tests/support/helm.py); that first build takes
minutes, later runs render in well under a second each.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from channel.control.tokens import token_problem
from channel.resources.manifests import Skipped, load_documents, parse_resource
from channel.settings import Settings
from support import helm
from support.manifest_schemas import kubernetes_versions, problems

pytestmark = pytest.mark.timeout(1800)  # the first test builds helm

CHART = helm.CHART
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
EXAMPLES = {path.stem: path for path in sorted((CHART / "examples").glob("*.yaml"))}
# Every render: the chart's defaults (no values file), then each example.
RENDERS = ["defaults", *EXAMPLES]
COMPONENTS = ("controller", "ingress", "dispatcher")
VERSIONS = kubernetes_versions()
Manifest = dict[str, Any]


# Without a helm and the Go to build it: one line, the whole module skipped; under CI, which must
# render the chart, every test fails saying why.
if (_WHY := helm.unavailable()) is not None and not os.environ.get("CI"):
    pytest.skip(_WHY, allow_module_level=True)


@pytest.fixture(scope="session", autouse=True)
def helm_binary() -> Path:
    """helm, built the first time (a failed build fails every test here)."""
    try:
        return helm.binary()
    except helm.HelmUnavailable as exc:
        pytest.fail(f"CI renders the chart with helm, but {exc}" if os.environ.get("CI") else str(exc))


def _values_files(render: str) -> list[Path]:
    return [] if render == "defaults" else [EXAMPLES[render]]


@functools.cache
def _render(render: str, kube_version: str | None = None, set_json: tuple[str, ...] = ()) -> list[Manifest]:
    return helm.template(_values_files(render), kube_version=kube_version, set_json=set_json)


def _values(render: str) -> dict[str, Any]:
    """values.yaml with the example merged in, as helm merges them."""

    def merged(base: Any, override: Any) -> Any:
        if isinstance(base, dict) and isinstance(override, dict):
            return {**base, **{k: merged(base.get(k), v) for k, v in override.items()}}
        return override

    files = _values_files(render)
    values: dict[str, Any] = merged(VALUES, yaml.safe_load(files[0].read_text())) if files else VALUES
    return values


def _by_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod_specs(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _environment(docs: list[Manifest], container: Manifest) -> dict[str, str]:
    """A container's KANAL_ settings as the pod sees them: its envFrom ConfigMaps, then its env
    (a value from a Secret stands as "from-a-secret")."""
    configmaps = _by_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "from-a-secret")
    return env


def _settings(env: dict[str, str]) -> Settings:
    """The settings a component reads from `env` (and from nothing else of this machine's)."""
    return Settings.model_validate(
        {k.removeprefix("KANAL_").lower(): v for k, v in env.items() if k.startswith("KANAL_")}
    )


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


# -- helm itself -----------------------------------------------------------------------------


@pytest.mark.parametrize("render", RENDERS)
def test_helm_lint_strict_passes(render: str) -> None:
    out = helm.lint(_values_files(render))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_the_examples_cover_every_optional_feature() -> None:
    """Each switch of values.yaml (an `enabled`, a Secret of the user's, a list left empty, an
    authentication mode) is turned on by at least one example."""
    switches = {
        f"{path}.enabled" for path in ("ingress.autoscaling", "metrics.serviceMonitor",
                                       "metrics.prometheusRule", "metrics.grafanaDashboard")
    } | {
        "kafka.sasl.existingSecret", "kafka.tls.existingSecret", "kafka.tls.clientCertificate",
        "controller.token.existingSecret", "ingress.auth.tokensSecret", "resources", "extraEnv",
        "imagePullSecrets", "config.ingressUrl", "config.ingressAuth=tokens", "config.ingressAuth=jwt",
        "config.controllerOpenReads", "ingress.affinity", "dispatcher.affinity",
    }  # fmt: skip

    def setting(values: dict[str, Any], switch: str) -> Any:
        path, _, wanted = switch.partition("=")
        node: Any = values
        for part in path.split("."):
            node = node[part]
        return node == wanted if wanted else node

    on = {switch for name in EXAMPLES for switch in switches if setting(_values(name), switch)}
    assert not {switch for switch in switches if setting(VALUES, switch)}, "a switch is on by default"
    assert on == switches, f"no example turns on {sorted(switches - on)}"
    assert {"minimal", "production"} <= set(EXAMPLES)


def test_helm_applies_the_values_schema() -> None:
    with pytest.raises(helm.HelmFailed, match="logLevel"):
        helm.template(set_json=['config.logLevel="TRACE"'])
    with pytest.raises(helm.HelmFailed, match="kafkaSaslMechanism"):
        helm.template(set_json=['config.kafkaSecurityProtocol="SASL_SSL"'])


# -- Kubernetes and Prometheus Operator schemas ----------------------------------------------


def test_kube_version_starts_at_the_oldest_kubernetes_validated() -> None:
    """kubeVersion starts at the oldest Kubernetes whose schemas are bundled: helm refuses the
    minor version before it, and renders for the oldest and the newest."""
    oldest, newest = VERSIONS[0], VERSIONS[-1]
    major, minor, _ = oldest.split(".")
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"] == f">={oldest}-0"
    with pytest.raises(helm.HelmFailed, match="kubeVersion"):
        helm.template(kube_version=f"{major}.{int(minor) - 1}.99")
    assert _render("defaults", oldest) and _render("defaults", newest)
    # Managed clusters report their version with a suffix, which the constraint must admit.
    assert _render("defaults", f"v{major}.{minor}.16-eks-59bf375") and _render(
        "defaults", f"{newest}-gke.100"
    )


@pytest.mark.parametrize("kube_version", [VERSIONS[0], VERSIONS[-1]])
@pytest.mark.parametrize("render", RENDERS)
def test_every_rendered_manifest_is_valid_for_kubernetes(render: str, kube_version: str) -> None:
    docs = _render(render, kube_version)
    assert docs
    found = [problem for doc in docs for problem in problems(doc, kube_version)]
    assert not found, "\n".join(found)


def _kind(kind: str, name: str | None = None) -> Manifest:
    """A copy of a manifest of the production render (which stays as helm made it)."""
    doc = next(
        d for d in _render("production") if d["kind"] == kind and name in (None, d["metadata"]["name"])
    )
    return copy.deepcopy(doc)


def _broken(case: str) -> Manifest:
    """A rendered manifest with one thing wrong that only a schema (or the API server) knows."""
    if case in ("ServiceMonitor", "ServiceMonitor-metadata", "PrometheusRule"):
        doc = _kind(case.split("-")[0])
        if case == "ServiceMonitor":
            doc["spec"]["endpoints"][0]["interval"] = "every 15 seconds"
        elif case == "ServiceMonitor-metadata":  # a CRD's schema leaves metadata to ObjectMeta's
            doc["metadata"]["labls"] = doc["metadata"].pop("labels")
        else:
            del doc["spec"]["groups"][0]["rules"][0]["expr"]
        return doc
    doc = _kind("Deployment", "kanal-ingress")
    container = doc["spec"]["template"]["spec"]["containers"][0]
    if case == "port-as-a-string":
        container["ports"][0]["containerPort"] = "8080"
    elif case == "misspelled-field":
        container["readynessProbe"] = container.pop("readinessProbe")
    elif case == "missing-selector":
        del doc["spec"]["selector"]
    elif case == "removed-api":
        doc = {**_kind("PodDisruptionBudget"), "apiVersion": "policy/v1beta1"}
    elif case == "bad-name":
        doc["metadata"]["name"] = "Kanal_Ingress"
    elif case == "long-label-value":
        doc["metadata"]["labels"]["app.kubernetes.io/instance"] = "x" * 64
    return doc


@pytest.mark.parametrize(
    ("case", "said"),
    [
        pytest.param("port-as-a-string", "containerPort", id="port-as-a-string"),
        pytest.param("misspelled-field", "readynessProbe", id="misspelled-field"),
        pytest.param("missing-selector", "'selector' is a required property", id="missing-selector"),
        pytest.param("removed-api", "policy/v1beta1 PodDisruptionBudget is no kind", id="removed-api"),
        pytest.param("bad-name", "Kanal_Ingress", id="bad-name"),
        pytest.param("long-label-value", "app.kubernetes.io/instance", id="long-label-value"),
        pytest.param("ServiceMonitor", "every 15 seconds", id="ServiceMonitor"),
        pytest.param("ServiceMonitor-metadata", "'labls' was unexpected", id="ServiceMonitor-metadata"),
        pytest.param("PrometheusRule", "'expr' is a required property", id="PrometheusRule"),
    ],
)
@pytest.mark.parametrize("kube_version", [VERSIONS[0], VERSIONS[-1]])
def test_a_broken_manifest_is_refused(case: str, said: str, kube_version: str) -> None:
    found = problems(_broken(case), kube_version)
    assert found and said in "\n".join(found), found


def test_an_unknown_kind_is_refused() -> None:
    gadget = {"apiVersion": "kanal.dev/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    (found,) = problems(gadget, VERSIONS[-1])
    assert found.startswith("Gadget g: kanal.dev/v1 Gadget is no kind of Kubernetes")


# -- the rendered objects against the code ---------------------------------------------------


@pytest.mark.parametrize("render", RENDERS)
def test_each_component_gets_valid_settings_and_listens_where_probes_and_services_look(render: str) -> None:
    docs = _render(render)
    fields = set(Settings.model_fields)
    deployments = _by_kind(docs, "Deployment")
    assert set(deployments) == {f"kanal-{c}" for c in COMPONENTS}
    services = _by_kind(docs, "Service")
    for component in COMPONENTS:
        pod = deployments[f"kanal-{component}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == [component]
        env = _environment(docs, container)
        unknown = {name for name in env if name.startswith("KANAL_")} - {f"KANAL_{f.upper()}" for f in fields}
        assert not unknown, f"{component}: settings that do not exist: {unknown}"
        settings = _settings(env)  # raises if the component would refuse to start
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == getattr(settings, f"{component}_port")
        if component == "ingress":
            assert ports["metrics"] == settings.ingress_metrics_port
        else:
            assert set(ports) == {"http"}
        probes = {p: container[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes == {
            "startupProbe": {"path": "/healthz", "port": "http"},
            "livenessProbe": {"path": "/healthz", "port": "http"},
            "readinessProbe": {"path": "/readyz", "port": "http"},
        }, component
        # Each Service that selects these pods sends to ports they listen on.
        labels = _pod_labels(deployments[f"kanal-{component}"])
        assert _selects(deployments[f"kanal-{component}"]["spec"]["selector"]["matchLabels"], labels)
        selecting = [s for s in services.values() if _selects(s["spec"]["selector"], labels)]
        assert selecting, component
        for service in selecting:
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, (service["metadata"]["name"], port)
        # Secure by default, whatever the example.
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}  # the one place to write


def test_the_chart_passes_each_value_as_the_component_reads_it() -> None:
    # Helm reads numbers as floats: 20000000 must reach the ingress as "20000000", not 2e+07.
    numbers = ("config.ingressMaxBodyBytes=20000000", "config.dispatcherCommitInterval=0.5")
    docs = _render("production", None, numbers)
    data = _by_kind(docs, "ConfigMap")["kanal-settings"]["data"]
    assert data["KANAL_INGRESS_MAX_BODY_BYTES"] == "20000000"
    assert data["KANAL_DISPATCHER_COMMIT_INTERVAL"] == "0.5"
    ingress = _by_kind(docs, "Deployment")["kanal-ingress"]["spec"]["template"]["spec"]["containers"][0]
    settings = _settings(_environment(docs, ingress))
    assert settings.ingress_max_body_bytes == 20_000_000 and settings.dispatcher_commit_interval == 0.5
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512" and settings.kafka_sasl_password is not None
    assert settings.kafka_ssl_cafile == "/etc/kanal/kafka-tls/ca.crt"
    assert settings.public_ingress_url() == "http://kanal-ingress.kanal.svc.cluster.local"
    # Empty values are left out, so the component's default applies.
    assert "KANAL_INGRESS_JWT_ISSUER" not in data and "KANAL_INGRESS_URL" not in data


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


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_setting_is_in_the_chart_or_left_out_on_purpose() -> None:
    fields = set(Settings.model_fields)
    in_config = {_snake(name) for name in VALUES["config"]}
    assert in_config <= fields, f"config values that are no setting: {in_config - fields}"
    rendered = {
        name.removeprefix("KANAL_").lower()
        for render in RENDERS
        for _, pod in _pod_specs(_render(render))
        for container in pod["containers"]
        for name in _environment(_render(render), container)
        if name.startswith("KANAL_")
    }
    set_by_templates = rendered - in_config
    assert set_by_templates == set(SET_BY_TEMPLATES), set_by_templates ^ set(SET_BY_TEMPLATES)
    missing = fields - in_config - rendered - set(NOT_IN_CHART)
    assert not missing, f"settings the chart neither sets nor lists in NOT_IN_CHART: {sorted(missing)}"
    assert not set(NOT_IN_CHART) & (in_config | rendered)


@pytest.mark.parametrize("render", RENDERS)
def test_every_reference_resolves(render: str) -> None:
    """Mounts name volumes of the pod; ConfigMaps and Secrets are rendered or the user's own
    (named in the values); PDBs and the HPA reach the chart's Deployments."""
    docs = _render(render)
    values = _values(render)
    configmaps, secrets = set(_by_kind(docs, "ConfigMap")), set(_by_kind(docs, "Secret"))
    users_secrets = {
        values["kafka"]["sasl"]["existingSecret"], values["kafka"]["tls"]["existingSecret"],
        values["controller"]["token"]["existingSecret"], values["ingress"]["auth"]["tokensSecret"],
    } - {""}  # fmt: skip
    for name, pod in _pod_specs(docs):
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            for mount in container["volumeMounts"]:
                assert mount["name"] in volumes, (name, mount)
            for var in container.get("env", []):
                if "valueFrom" in var:
                    assert var["valueFrom"]["secretKeyRef"]["name"] in users_secrets | secrets, (name, var)
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps, (name, source)
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, (name, volume)
            if "secret" in volume:
                assert volume["secret"]["secretName"] in users_secrets | secrets, (name, volume)
    deployments = _by_kind(docs, "Deployment")
    for pdb in _by_kind(docs, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [d for d in deployments.values() if _selects(selector, _pod_labels(d))]
        assert len(matched) == 1, pdb["metadata"]["name"]
    for hpa in _by_kind(docs, "HorizontalPodAutoscaler").values():
        target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"]  # the HPA owns it
    autoscaled = "kanal-ingress" in _by_kind(docs, "HorizontalPodAutoscaler")
    assert autoscaled == values["ingress"]["autoscaling"]["enabled"]


@pytest.mark.parametrize("render", ["monitoring", "production"])
def test_the_service_monitor_scrapes_each_component_where_it_serves_metrics(render: str) -> None:
    """Each endpoint that the ServiceMonitor's selector and port names reach lands on the port
    where that component serves /metrics (the ingress's metrics port, never its events port)."""
    docs = _render(render)
    (monitor,) = _by_kind(docs, "ServiceMonitor").values()
    deployments = _by_kind(docs, "Deployment")
    scraped: dict[str, set[int]] = {}
    for service in _by_kind(docs, "Service").values():
        if not _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]):
            continue
        (component,) = (
            c
            for c in COMPONENTS
            if _selects(service["spec"]["selector"], _pod_labels(deployments[f"kanal-{c}"]))
        )
        (container,) = deployments[f"kanal-{component}"]["spec"]["template"]["spec"]["containers"]
        container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            for port in service["spec"]["ports"]:
                if port["name"] == endpoint["port"]:
                    assert endpoint["path"] == "/metrics"
                    scraped.setdefault(component, set()).add(container_ports[port["targetPort"]])
    settings = Settings()
    assert scraped == {
        "controller": {settings.controller_port},
        "dispatcher": {settings.dispatcher_port},
        "ingress": {settings.ingress_metrics_port},
    }


def test_the_admin_api_is_reached_inside_the_cluster_only_with_the_token_of_a_secret() -> None:
    for render in RENDERS:
        docs = _render(render)
        assert not [d for d in docs if d["kind"] in ("Ingress", "Route", "HTTPRoute")], render
        assert _by_kind(docs, "Service")["kanal-controller"]["spec"].get("type", "ClusterIP") == "ClusterIP"
        owned = _values(render)["controller"]["token"]["existingSecret"]
        secret_name = owned or "kanal-controller-token"
        assert ("kanal-controller-token" in _by_kind(docs, "Secret")) == (not owned), render
        # Mounted, with KANAL_CONTROLLER_TOKEN_FILE, into the controller and the apply Job only.
        for name, pod in _pod_specs(docs):
            secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
            env = _environment(docs, pod["containers"][0])
            has_token = name in ("kanal-controller", "kanal-apply")
            assert (secret_name in secrets) == has_token, (render, name)
            assert ("KANAL_CONTROLLER_TOKEN_FILE" in env) == has_token, (render, name)
    (secret,) = (d for d in _render("defaults") if d["kind"] == "Secret")
    assert token_problem(base64.b64decode(secret["data"]["token"]).decode()) is None
    assert _render("defaults")[0] is not None and VALUES["config"]["controllerOpenReads"] is False


def test_the_apply_job_applies_the_resources_of_the_values() -> None:
    docs = _render("resources")
    (job,) = _by_kind(docs, "Job").values()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["apply", "-f", "/etc/kanal/resources/resources.yaml"]
    env = _environment(docs, container)
    assert env["KANAL_CONTROLLER_TOKEN_FILE"] == "/etc/kanal/controller-token/token"
    assert env["KANAL_CONTROLLER_URL"] == "http://kanal-controller:8081"
    text = _by_kind(docs, "ConfigMap")["kanal-resources"]["data"]["resources.yaml"]
    applied = load_documents(text, "resources.yaml")
    assert applied == _values("resources")["resources"]
    for i, doc in enumerate(applied):
        assert not isinstance(parse_resource(doc, f"resource {i + 1}"), Skipped)  # raises if invalid
    assert "Job" not in {d["kind"] for d in _render("defaults")}  # no resources, no Job


def test_monitoring_objects_carry_the_chart_files() -> None:
    docs = _render("monitoring")
    (rule,) = _by_kind(docs, "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "kanal-rules.yml").read_text())
    dashboard = _by_kind(docs, "ConfigMap")["kanal-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "kanal.json").read_text())
    assert json.loads(dashboard["data"]["kanal.json"]) == shipped
    assert not {"ServiceMonitor", "PrometheusRule"} & {d["kind"] for d in _render("defaults")}
