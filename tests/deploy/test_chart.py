"""The Helm chart: it lints, renders, validates against Kubernetes and follows the settings.

Operators meet the project through the chart first, so a broken template, a manifest the API
server would refuse or a setting the chart forgot must fail the test command, not an install.
Everything runs offline: Helm's own engine in-process (helm-python-sdk), Kubernetes' OpenAPI
schemas as bundled by kubernetes-validate, checked strictly (an unknown field is an error).
"""

from __future__ import annotations

import base64
import ipaddress
import math
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types
import helm_python as helm
import kubernetes_validate
import pytest

from gateway.config import Settings, env_name, load_settings
from gateway.webpush.destinations import refusal

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "jmap-gateway"
PRODUCTION = ROOT / "deploy" / "helm" / "examples" / "production.yaml"
RELEASE = "jmap"
NAMESPACE = "mail"

# What an operator must give on top of values.yaml; everything else has a default.
MINIMUM: dict[str, Any] = {
    "config": {"imapUrl": "imaps://imap.example.com", "publicUrl": "https://jmap.example.com"},
    "secrets": {"gatewaySecret": "0123456789abcdef" * 4, "redisUrl": "redis://redis:6379/0"},
}

# Settings the chart keeps out of its ConfigMap, and why.
SECRET_SETTINGS = {
    "redis_url": "may carry a password: secrets.redisUrl or existingSecret, in a Secret",
    "secret": "the account-id key: secrets.gatewaySecret or existingSecret, in a Secret",
    "redis_sentinel_password": "secrets.redisSentinelPassword or existingSecret, in a Secret",
    "smtp_service_password": "secrets.smtpServicePassword or existingSecret, in a Secret",
    "imap_master_password": "secrets.imapMasterPassword or existingSecret, in a Secret",
    "webpush_vapid_private_key": "secrets.webpushVapidPrivateKey or existingSecret, in a Secret",
}
# Keys the schema knows but values.yaml leaves out: the operator must choose them.
NO_DEFAULT = {"imapUrl", "publicUrl"}
BOUND_KEYS = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}
# What the operator's Secret holds when the chart makes none (existingSecret).
EXISTING_SECRET = {
    "GATEWAY_SECRET": MINIMUM["secrets"]["gatewaySecret"],
    "GATEWAY_REDIS_URL": MINIMUM["secrets"]["redisUrl"],
}


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` over ``base``, nested maps merged key by key (as Helm layers values files)."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# The other branches of the templates: metrics off, memory autoscaling, a CA from a Secret,
# minAvailable, an image digest, no ServiceAccount, no preStop hook, SMTP with STARTTLS and a
# service account, Redis through Sentinels that have their own password, an IMAP master user.
OPTIONS = merged(
    MINIMUM,
    {
        "config": {
            "smtpUrl": "smtp://smtp.example.com?starttls",
            "smtpServiceUsername": "jmap-submit",
            "maxDelayedSendSeconds": 86400,
            "metricsPort": 0,
            "poolMaxPerUser": 2,
            "imapConnectTimeout": 2.5,
            "maxSizeUpload": 100_000_000,
            "usernameFormat": "%Ln",
            "trustedProxies": "10.0.0.0/8, 192.0.2.1",
            "forwardedHeader": "Forwarded",
            "loginFailuresPerAddress": 0,
            "imapMasterUser": "gwmaster",
            "imapMasterLogin": "separator:*",
            "webpushAllowedDestinations": "10.8.0.0/16, relay.internal",
            "webpushVapidSubject": "mailto:ops@example.com",
        },
        "image": {"digest": "sha256:" + "ab" * 32},
        "upstreamCa": {"secret": "internal-ca"},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "ingress": {
            "enabled": True,
            "tls": [{"secretName": "jmap-tls", "hosts": ["jmap.example.com"]}],
            "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "7200"},
        },
        "autoscaling": {
            "enabled": True,
            "targetCPUUtilizationPercentage": None,
            "targetMemoryUtilizationPercentage": 80,
        },
        "podDisruptionBudget": {"maxUnavailable": None, "minAvailable": "50%"},
        "networkPolicy": {"enabled": True},
        "serviceAccount": {"create": False},
        "preStopSleepSeconds": 0,
        "secrets": {
            "redisUrl": "redis+sentinel://:data-pw@sentinel-0:26379,sentinel-1:26379/mymaster/0",
            "redisSentinelPassword": "sentinel-pw",
            "smtpServicePassword": "submit-pw",
            "imapMasterPassword": "master-pw",
            "webpushVapidPrivateKey": "bnAh9C8UbR5TJwgjAFgUWHwtWTUW4m1byhmPvIqXyVQ",
        },
    },
)

# values set -> the kinds it must render (a template that silently renders nothing fails).
VALUE_SETS = {
    "defaults": {
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
    },
    "production": {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    },
    "options": {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    },
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def values_of(name: str) -> dict[str, Any]:
    if name == "production":
        # Parsed by Helm itself, as `helm install -f` does.
        return helm.values_from_yaml(PRODUCTION.read_text())
    return {"defaults": MINIMUM, "options": OPTIONS}[name]


def render(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every manifest the chart renders for ``values``, parsed by Helm's YAML reader."""
    manifests = []
    for path, text in sorted(chart.render(values, name=RELEASE, namespace=NAMESPACE).items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in re.split(r"(?m)^---\s*$", text):
            if document.strip():
                manifests.append(helm.values_from_yaml(document))
    return manifests


def one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


def container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["gateway"]
    return dict(containers[0])


def kube_versions(chart: helm.Chart) -> list[str]:
    """The oldest Kubernetes the chart claims (Chart.yaml kubeVersion) and the newest bundled."""
    floor = re.fullmatch(r">=\s*v?(\d+\.\d+)\.\d+(-0)?", chart.metadata["kubeVersion"])
    assert floor, chart.metadata["kubeVersion"]
    return [f"{floor.group(1)}.0", kubernetes_validate.latest_version()]


@pytest.mark.parametrize("name", ["defaults", "production"])
def test_lint_finds_nothing_above_info(name: str) -> None:
    report = helm.lint(CHART, values_of(name), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_manifest_validates_strictly(chart: helm.Chart, name: str) -> None:
    manifests = render(chart, values_of(name))
    assert {m["kind"] for m in manifests} == VALUE_SETS[name]
    for manifest in manifests:
        assert manifest["metadata"]["namespace"] == NAMESPACE
        if manifest["kind"] == "ServiceMonitor":
            continue  # a CRD: kubernetes-validate has no schema; see the test below
        for version in kube_versions(chart):
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(part) for part in exc.path)
                pytest.fail(f"{manifest['kind']} on {version}: {where}: {exc.message}")


def test_notes_give_the_session_url(chart: helm.Chart) -> None:
    notes = chart.render(values_of("production"), name=RELEASE, namespace=NAMESPACE)
    assert "https://jmap.example.com/.well-known/jmap" in notes["jmap-gateway/templates/NOTES.txt"]


def test_service_monitor_scrapes_the_metrics_port(chart: helm.Chart) -> None:
    """The Prometheus Operator's CRD has no bundled schema, so its shape is checked here.

    A ServiceMonitor finds Services by label and scrapes a port by name: a mismatch with the
    Service is not an error anywhere, just silently no metrics.
    """
    manifests = render(chart, values_of("production"))
    monitor, service = one(manifests, "ServiceMonitor"), one(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) == {"namespaceSelector", "selector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [endpoint] = spec["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    for duration in (endpoint["interval"], endpoint["scrapeTimeout"]):
        assert re.fullmatch(r"\d+(ms|s|m|h)", duration)
    ports = {port["name"]: port["containerPort"] for port in container(manifests)["ports"]}
    target = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    assert target["targetPort"] in ports


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (merged(MINIMUM, {"replicaCount": "two"}), "at '/replicaCount': got string, want integer"),
        (merged(MINIMUM, {"replicas": 2}), "additional properties 'replicas' not allowed"),
        (
            {**MINIMUM, "config": {"publicUrl": "https://jmap.example.com"}},
            "at '/config': missing property 'imapUrl'",
        ),
        (merged(MINIMUM, {"config": {"imapUrl": "http://imap.example.com"}}), "'/config/imapUrl'"),
        (merged(MINIMUM, {"config": {"port": 70000}}), "at '/config/port': maximum"),
        (merged(MINIMUM, {"config": {"metricsPort": "9090"}}), "'/config/metricsPort': got string"),
        (merged(MINIMUM, {"config": {"shutdownTimeoutSeconds": 0}}), "shutdownTimeoutSeconds'"),
        (merged(MINIMUM, {"config": {"shutdownTimeoutSeconds": 2.5}}), "shutdownTimeoutSeconds'"),
        (merged(MINIMUM, {"config": {"poolMaxPerUser": 0}}), "at '/config/poolMaxPerUser'"),
        (merged(MINIMUM, {"config": {"poolMaxTotl": 10}}), "properties 'poolMaxTotl' not allowed"),
        (merged(MINIMUM, {"config": {"logLevel": "verbose"}}), "at '/config/logLevel'"),
        # The gateway takes redis://, rediss://, unix:// and redis+sentinel:// (with rediss+).
        (merged(MINIMUM, {"secrets": {"redisUrl": "memcached://s:11211"}}), "/secrets/redisUrl"),
        (merged(MINIMUM, {"image": {"pullPolicy": "Sometimes"}}), "at '/image/pullPolicy'"),
    ],
)
def test_schema_rejects_bad_values(
    chart: helm.Chart, values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm.HelmValuesError) as raised:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert complaint in str(raised.value)


@pytest.mark.parametrize(
    ("patch", "complaint"),
    [
        ({"terminationGracePeriodSeconds": 34}, "terminationGracePeriodSeconds (34) must be at"),
        # 5 preStop + 5 push drain + 20 shutdown + 10 LOGOUTs.
        ({"terminationGracePeriodSeconds": 39}, "terminationGracePeriodSeconds (39) must be at"),
        (
            {"config": {"pushDrainSeconds": 5.5}},
            "terminationGracePeriodSeconds (40) must be at least preStopSleepSeconds + "
            "config.pushDrainSeconds (default 5) + config.shutdownTimeoutSeconds + 10 (41)",
        ),
        ({"config": {"metricsPort": 8080}}, "config.metricsPort must differ from config.port"),
        (
            {"config": {"metricsPort": 0}, "metrics": {"serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled needs config.metricsPort",
        ),
        ({"secrets": {"gatewaySecret": ""}}, "secrets.gatewaySecret (GATEWAY_SECRET) is required"),
        ({"secrets": {"redisUrl": ""}}, "secrets.redisUrl (GATEWAY_REDIS_URL"),
        (
            {"upstreamCa": {"configMap": "ca"}, "config": {"tlsCaFile": "/ca.pem"}},
            "set either upstreamCa",
        ),
        (
            {"podDisruptionBudget": {"minAvailable": 1}},
            "set exactly one of minAvailable and maxUnavailable",
        ),
    ],
)
def test_templates_refuse_what_the_schema_cannot_see(
    chart: helm.Chart, patch: dict[str, Any], complaint: str
) -> None:
    """Rules across values fail the render with a message, not a pod that never starts."""
    with pytest.raises(helm.HelmRenderError) as raised:
        chart.render(merged(MINIMUM, patch), name=RELEASE, namespace=NAMESPACE)
    assert complaint in str(raised.value)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_deployment_runs_locked_down(chart: helm.Chart, name: str) -> None:
    manifests = render(chart, values_of(name))
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    gateway = container(manifests)
    security = {**pod["securityContext"], **gateway["securityContext"]}
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] > 0
    assert security["runAsGroup"] > 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security.get("privileged", False) is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # The one writable place on the read-only root filesystem is a bounded emptyDir.
    mounts = {m["mountPath"]: m["name"] for m in gateway["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_probes_ports_and_shutdown_match_the_gateway(chart: helm.Chart, name: str) -> None:
    manifests = render(chart, values_of(name))
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    gateway = container(manifests)
    settings = one(manifests, "ConfigMap")["data"]
    ports = {port["name"]: port["containerPort"] for port in gateway["ports"]}
    assert ports["http"] == int(settings["GATEWAY_PORT"])
    if int(settings["GATEWAY_METRICS_PORT"]):
        assert ports["metrics"] == int(settings["GATEWAY_METRICS_PORT"])
    else:
        assert "metrics" not in ports
    # Liveness and startup never depend on Redis or the upstream; readiness does.
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert gateway[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    service = one(manifests, "Service")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        port: port for port in ports
    }
    # SIGTERM comes after the preStop sleep; the gateway's own deadline must end before the
    # kubelet's SIGKILL, or requests in flight are cut.
    pre_stop = gateway.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    sleep = int(pre_stop[1]) if pre_stop else 0
    if pre_stop:
        assert pre_stop[0] == "sleep"
    shutdown = int(settings["GATEWAY_SHUTDOWN_TIMEOUT_SECONDS"])
    # Push streams are drained first (the gateway's default when the chart leaves it unset).
    drain = math.ceil(float(settings.get("GATEWAY_PUSH_DRAIN_SECONDS", "5")))
    # 10 s after the timeout for the upstream LOGOUTs (gateway.imap.pool.close).
    assert sleep + drain + shutdown + 10 <= pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("name", ["production", "options"])
def test_ingress_keeps_push_streams_open(chart: helm.Chart, name: str) -> None:
    """ingress-nginx would cut an EventSource or WebSocket silent for 60 s and buffer events;
    an annotation the operator set wins over the chart's."""
    values = values_of(name)
    annotations = one(render(chart, values), "Ingress")["metadata"]["annotations"]
    own = values["ingress"].get("annotations", {})
    chart_defaults = {
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
        "nginx.ingress.kubernetes.io/proxy-buffering": "off",
    }
    assert annotations == {**chart_defaults, **own}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_gateway_accepts_the_rendered_settings(
    chart: helm.Chart, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's environment, built as the kubelet would, loads into the gateway's Settings.

    pydantic-settings ignores a GATEWAY_* variable that names no setting, so the names are
    checked too: a misspelt one would otherwise be dropped without a word.
    """
    manifests = render(chart, values_of(name))
    gateway = container(manifests)
    environment = dict(one(manifests, "ConfigMap")["data"])
    secrets = [m for m in manifests if m["kind"] == "Secret"]
    secret_data = {
        key: base64.b64decode(value).decode()
        for secret in secrets
        for key, value in secret["data"].items()
    }
    for variable in gateway["env"]:
        if "valueFrom" in variable:
            reference = variable["valueFrom"]["secretKeyRef"]
            if secrets:
                assert reference["name"] == secrets[0]["metadata"]["name"]
                source = secret_data
            else:
                source = EXISTING_SECRET
            # The kubelet leaves an optional key that the Secret lacks unset.
            key = reference["key"] if secrets else variable["name"]
            if key in source:
                environment[variable["name"]] = source[key]
            else:
                assert reference.get("optional") is True, variable["name"]
    fields = {env_name(field) for field in Settings.model_fields}
    gateway_variables = {key for key in environment if key.startswith("GATEWAY_")}
    assert gateway_variables <= fields
    # The CA bundle exists only inside the pod: check that a mount provides it instead.
    ca_file = environment.pop("GATEWAY_TLS_CA_FILE", None)
    if ca_file:
        assert any(ca_file.startswith(m["mountPath"] + "/") for m in gateway["volumeMounts"])
    for variable in fields:
        monkeypatch.delenv(variable, raising=False)
    for key in gateway_variables - {"GATEWAY_TLS_CA_FILE"}:
        monkeypatch.setenv(key, environment[key])
    settings = load_settings()
    assert settings.port == int(environment["GATEWAY_PORT"])
    assert settings.base_url == values_of(name)["config"]["publicUrl"]
    sentinel_password = values_of(name)["secrets"].get("redisSentinelPassword")
    if sentinel_password:
        assert settings.redis_sentinel_password is not None
        assert settings.redis_sentinel_password.get_secret_value() == sentinel_password
    service_password = values_of(name)["secrets"].get("smtpServicePassword")
    if service_password:
        assert settings.smtp_service_password is not None
        assert settings.smtp_service_password.get_secret_value() == service_password
    master_password = values_of(name)["secrets"].get("imapMasterPassword")
    if master_password:
        assert settings.imap_master_password is not None
        assert settings.imap_master_password.get_secret_value() == master_password
    vapid_key = values_of(name)["secrets"].get("webpushVapidPrivateKey")
    if vapid_key:
        assert settings.webpush_vapid_private_key is not None
        assert settings.webpush_vapid_private_key.get_secret_value() == vapid_key


def test_chart_settings_follow_the_gateway(chart: helm.Chart) -> None:
    """Every non-secret setting has a chart key of the same name, type and bounds.

    values.schema.json refuses unknown keys, so its ``config`` properties are the chart's
    settings; values.yaml lists all but those the operator must choose.
    """
    schema = chart.schema
    assert schema is not None
    properties = schema["properties"]["config"]["properties"]
    by_field = {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): key for key in properties}
    assert set(by_field) == set(Settings.model_fields) - set(SECRET_SETTINGS)
    assert set(properties) - set(chart.values["config"]) == NO_DEFAULT
    assert set(chart.values["config"]) <= set(properties)
    bounds: dict[type, tuple[str, str]] = {
        annotated_types.Ge: ("minimum", "ge"),
        annotated_types.Gt: ("exclusiveMinimum", "gt"),
        annotated_types.Le: ("maximum", "le"),
        annotated_types.Lt: ("exclusiveMaximum", "lt"),
    }
    json_types = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "string"}
    for field, key in by_field.items():
        info, prop = Settings.model_fields[field], properties[key]
        assert prop["description"].startswith(env_name(field)), key
        declared = {
            bounds[type(rule)][0]: getattr(rule, bounds[type(rule)][1])
            for rule in info.metadata
            if type(rule) in bounds
        }
        assert {k: prop[k] for k in prop.keys() & BOUND_KEYS} == declared, key
        annotation = info.annotation
        python_types = (
            set(annotation.__args__) - {type(None)}
            if isinstance(annotation, types.UnionType)
            else {annotation}
        )
        schema_types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        assert set(schema_types) - {"null"} == {json_types[t] for t in python_types}, key


def test_each_worker_metrics_port_is_exposed_and_scraped(chart: helm.Chart) -> None:
    """config.workers: worker i serves its metrics on metricsPort + i (gateway.workers), so
    the pod, the Service, the NetworkPolicy and the ServiceMonitor name every one of them."""
    values = merged(values_of("production"), {"config": {"workers": 3}})
    manifests = render(chart, values)
    base = int(one(manifests, "ConfigMap")["data"]["GATEWAY_METRICS_PORT"])
    names = ["metrics", "metrics-1", "metrics-2"]
    ports = {p["name"]: p["containerPort"] for p in container(manifests)["ports"]}
    assert [ports[name] for name in names] == [base, base + 1, base + 2]
    service = {p["name"]: p["targetPort"] for p in one(manifests, "Service")["spec"]["ports"]}
    assert all(service[name] == name for name in names)
    endpoints = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    assert [e["port"] for e in endpoints] == names
    policy = one(manifests, "NetworkPolicy")["spec"]["ingress"]
    assert any([p["port"] for p in rule["ports"]] == names for rule in policy)
    for manifest in manifests:
        if manifest["kind"] != "ServiceMonitor":
            for version in kube_versions(chart):
                kubernetes_validate.validate(manifest, version, strict=True)


def test_network_policy_lets_web_push_reach_public_addresses_only(chart: helm.Chart) -> None:
    """Web Push needs 443 out to the internet; the rule excepts what the gateway refuses
    itself (gateway/webpush/destinations.py), and an empty webPushPorts drops it."""

    def web_push_rules(values: dict[str, Any]) -> list[dict[str, Any]]:
        egress = one(render(chart, values), "NetworkPolicy")["spec"]["egress"]
        return [rule for rule in egress if [p["port"] for p in rule["ports"]] == [443]]

    [rule] = web_push_rules(values_of("options"))
    blocks = [peer["ipBlock"] for peer in rule["to"]]
    assert [block["cidr"] for block in blocks] == ["0.0.0.0/0", "::/0"]
    for block in blocks:
        for excepted in block["except"]:
            network = ipaddress.ip_network(excepted)
            assert refusal(network[0]) is not None and refusal(network[-1]) is not None
    assert "169.254.0.0/16" in blocks[0]["except"]
    off = merged(values_of("options"), {"networkPolicy": {"egress": {"webPushPorts": []}}})
    assert web_push_rules(off) == []
