"""The Helm chart (charts/vaultsync), rendered and linted by Helm's own engine (helm-python-sdk), without
an API server:

* lint is clean and every documented values set renders; bad values are refused by values.schema.json
  or by the templates, naming the value;
* one source of truth with deploy/: for each documented values set that has a kustomize twin, the objects
  that matter (RBAC rules and bindings, ServiceAccount, the Deployment's pod and container) are the same
  as `kubectl kustomize` renders them; the chart's CRDs are those of crds/ and its alert rules those of
  deploy/prometheus/rules.yaml.

The real install and upgrade into an API server, with the operator then run under the chart's RBAC, is
tests/e2e/test_chart_install.py.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.chart_render import (
    CHART_DIR,
    OVERLAY_OF,
    VALUES_SETS,
    render_chart,
    render_texts,
    values_of,
)
from tests.deploy_render import OPERATOR_NAMESPACE, REPO_ROOT, find, render_overlay
from tests.test_deploy import ESCALATING_VERBS, _rule_items

Obj = dict[str, Any]
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
# What kustomize renders that the chart does not template: the CRDs come from the chart's crds/ (checked
# below), the namespace from `helm install --create-namespace` (or exists already).
NOT_TEMPLATED = ("CustomResourceDefinition", "Namespace")
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "rules.yaml"
CHART_RULES_FILE = CHART_DIR / "files" / "prometheus-rules.yaml"


def key(obj: Obj) -> tuple[str, str | None, str]:
    return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]


# ------------------------------------------------------------------------------ lint and render


@pytest.mark.parametrize("values_set", list(VALUES_SETS))
def test_lint_is_clean(values_set: str) -> None:
    for kube_version in (None, "v1.20.2"):
        report = helm.lint(CHART_DIR, values_of(values_set), strict=True, kube_version=kube_version)
        assert report["errors"] == []
        # Severity 1 is information ("icon is recommended"); 2 warning, 3 error.
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values_set", list(VALUES_SETS))
def test_every_documented_values_set_renders(values_set: str) -> None:
    objects = render_chart(values_of(values_set))
    kinds = {o["kind"] for o in objects}
    assert {"ServiceAccount", "Deployment", "ClusterRole", "Role", "RoleBinding"} <= kinds
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"].get("namespace"), key(obj)
    # Every values set is listed in the chart's README.
    assert f"ci/{VALUES_SETS[values_set].name}" in (CHART_DIR / "README.md").read_text()


def test_every_rbac_rule_has_a_comment_in_the_rendered_chart() -> None:
    for values_set in VALUES_SETS:
        text = render_texts(values_of(values_set))["vaultsync/templates/rbac.yaml"]
        items = list(_rule_items(text))
        rules = sum(len(d.get("rules") or []) for d in yaml.safe_load_all(text) if d)
        assert len(items) == rules >= 7
        assert all(commented for _, commented in items), values_set


def test_no_wildcards_or_escalation() -> None:
    for values_set in VALUES_SETS:
        for obj in render_chart(values_of(values_set)):
            for rule in obj.get("rules") or []:
                for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert not any("*" in v for v in rule.get(field) or []), (key(obj), rule)
                assert not ESCALATING_VERBS & set(rule["verbs"])


def test_release_names_prefix_every_object() -> None:
    """Another release name gives other names, cluster-scoped ones included: two releases never share."""
    objects = render_chart({}, name="team-a", namespace="team-a-system")
    names = {o["metadata"]["name"] for o in objects}
    assert all(n.startswith("team-a-vaultsync") for n in names), names
    binding = find(objects, "ClusterRoleBinding", "team-a-vaultsync")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "team-a-vaultsync", "namespace": "team-a-system"}
    ]


# --------------------------------------------------------------------------- one source of truth


def comparable(objects: Sequence[Obj]) -> dict[tuple[str, str | None, str], Obj]:
    """The parts that must be the same in the chart and deploy/: names, RBAC, the pod. Labels differ on
    purpose (the chart adds Helm's instance/version labels and selects by instance too)."""
    result: dict[tuple[str, str | None, str], Obj] = {}
    for obj in objects:
        if obj["kind"] in NOT_TEMPLATED:
            continue
        part: Obj = {"apiVersion": obj["apiVersion"]}
        if obj["kind"] in ("Role", "ClusterRole"):
            part["rules"] = obj["rules"]
        elif obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            part["roleRef"], part["subjects"] = obj["roleRef"], obj["subjects"]
        elif obj["kind"] == "ServiceAccount":
            part["automountServiceAccountToken"] = obj.get("automountServiceAccountToken")
        elif obj["kind"] == "Deployment":
            spec = copy.deepcopy(obj["spec"])
            pod = spec["template"]["spec"]
            pod.pop("affinity")  # its selector labels: the chart's select by instance too
            (container,) = pod.pop("containers")
            env = container.pop("env")
            names = [e["name"] for e in env]
            assert len(names) == len(set(names)), names
            part.update(
                replicas=spec["replicas"],
                strategy=spec["strategy"],
                pod=pod,
                container=container,
                env={e["name"]: e for e in env},
            )
        elif obj["kind"] == "Service":
            part["ports"] = obj["spec"]["ports"]
        elif obj["kind"] == "PodDisruptionBudget":
            part["maxUnavailable"] = obj["spec"]["maxUnavailable"]
        else:
            raise AssertionError(f"no comparison for {key(obj)}: add one")
        result[key(obj)] = part
    return result


@pytest.mark.parametrize("values_set", list(OVERLAY_OF))
def test_chart_renders_what_the_kustomize_overlay_renders(values_set: str) -> None:
    chart = comparable(render_chart(values_of(values_set)))
    kustomize = comparable(render_overlay(OVERLAY_OF[values_set]))
    assert sorted(chart) == sorted(kustomize)
    for name, part in kustomize.items():
        assert chart[name] == part, name


def test_the_comparison_sees_a_drifted_rule() -> None:
    """The drift test compares rules, env and the pod, not just names."""
    kustomize = render_overlay(OVERLAY_OF["cluster-wide"])
    drifted = copy.deepcopy(kustomize)
    find(drifted, "ClusterRole", "vaultsync")["rules"][0]["verbs"].append("delete")
    assert comparable(drifted) != comparable(kustomize)
    drifted = copy.deepcopy(kustomize)
    container = find(drifted, "Deployment", "vaultsync")["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "VAULTSYNC_CONCURRENCY", "value": "8"})
    assert comparable(drifted) != comparable(kustomize)


def crd_files(directory: Any) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(directory.glob("*.yaml")) if p.name != "kustomization.yaml"
    }


def test_the_charts_crds_are_those_of_crds() -> None:
    """charts/vaultsync/crds/ holds copies (Helm reads only files inside the chart): the same files, byte
    for byte. `python -m vaultsync.api.generate` writes both."""
    source = crd_files(REPO_ROOT / "crds")
    assert source
    assert crd_files(CHART_DIR / "crds") == source
    with helm.Chart.load(CHART_DIR) as chart:
        loaded = {c["filename"].rsplit("/", 1)[-1] for c in chart.crds}
    assert loaded == set(source)


def test_the_charts_alert_rules_are_those_of_deploy() -> None:
    """One source: deploy/prometheus/rules.yaml; the chart includes its identical copy as it is."""
    assert CHART_RULES_FILE.read_bytes() == RULES_FILE.read_bytes(), (
        "cp deploy/prometheus/rules.yaml charts/vaultsync/files/prometheus-rules.yaml"
    )
    rule = find(
        render_chart({"metrics": {"prometheusRule": {"enabled": True}}}), "PrometheusRule", "vaultsync"
    )
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
    assert rule["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert "PrometheusRule" not in {o["kind"] for o in render_chart({})}


# -------------------------------------------------------------------------------- values


def container_of(objects: Sequence[Obj]) -> tuple[Obj, Obj]:
    pod = find(objects, "Deployment", "vaultsync")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_full_values_set() -> None:
    values = values_of("full")
    objects = render_chart(values)
    pod, container = container_of(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VAULT_ADDR"] == "https://vault.example.internal:8200"
    assert env["VAULT_NAMESPACE"] == "platform"
    assert env["VAULTSYNC_AUTH_METHOD"] == "jwt"
    assert env["VAULTSYNC_AUTH_MOUNT"] == "jwt-k8s"
    assert env["VAULTSYNC_AUTH_ROLE"] == "vaultsync-operator"
    assert env["VAULTSYNC_AUTH_AUDIENCE"] == "vault"
    assert env["VAULTSYNC_WATCH_NAMESPACES"] == "team-a,team-b"
    assert env["VAULTSYNC_LEADER_ELECTION"] == "false"
    assert env["VAULTSYNC_LOG_FORMAT"] == "text"
    assert env["VAULTSYNC_LOG_LEVEL"] == "DEBUG"
    assert env["VAULTSYNC_CONCURRENCY"] == "64"
    assert env["VAULTSYNC_DEFAULT_MOUNT"] == "kv"
    # The CA file the operator is told about is the one the ConfigMap volume provides.
    mount = next(m for m in container["volumeMounts"] if m["name"] == "vault-ca")
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "vault-ca")
    assert volume["configMap"] == {"name": "vault-ca", "items": [{"key": "ca.pem", "path": "ca.pem"}]}
    assert env["VAULT_CACERT"] == f"{mount['mountPath']}/ca.pem"
    assert container["resources"] == values["resources"]
    assert find(objects, "Deployment", "vaultsync")["spec"]["replicas"] == 1
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["tolerations"] == values["tolerations"]
    # A Role in each served namespace, no cluster-wide Secrets; no PodDisruptionBudget.
    for namespace in ("team-a", "team-b"):
        assert (
            find(objects, "Role", "vaultsync", namespace)["rules"]
            == find(render_chart({}), "ClusterRole", "vaultsync")["rules"]
        )
        find(objects, "RoleBinding", "vaultsync", namespace)
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"] == ["vaultsync-discovery"]
    assert "PodDisruptionBudget" not in {o["kind"] for o in objects}
    # The ServiceMonitor scrapes the metrics Service.
    monitor = find(objects, "ServiceMonitor", "vaultsync")
    service = find(objects, "Service", "vaultsync-metrics")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    assert find(objects, "ServiceAccount", "vaultsync")["metadata"]["annotations"] == {
        "example.com/role": "vaultsync"
    }


def test_ca_from_a_secret() -> None:
    pod, container = container_of(
        render_chart({"vault": {"address": "https://v:8200", "ca": {"secret": "ca"}}})
    )
    volume = next(v for v in pod["volumes"] if v["name"] == "vault-ca")
    assert volume["secret"] == {"secretName": "ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VAULT_CACERT"] == "/etc/vaultsync/vault-ca/ca.crt"


def test_the_service_selects_the_pods() -> None:
    objects = render_chart({})
    labels = find(objects, "Deployment", "vaultsync")["spec"]["template"]["metadata"]["labels"]
    for selector in (
        find(objects, "Service", "vaultsync-metrics")["spec"]["selector"],
        find(objects, "PodDisruptionBudget", "vaultsync")["spec"]["selector"]["matchLabels"],
        find(objects, "Deployment", "vaultsync")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    # Another release in the same namespace is not selected: the selector holds the instance.
    assert labels["app.kubernetes.io/instance"] == "vaultsync"


BAD_VALUES: list[tuple[Obj, str]] = [
    ({"replicas": "two"}, "/replicas"),
    ({"replicas": -1}, "/replicas"),
    ({"leaderElection": "yes"}, "/leaderElection"),
    ({"unknownKey": 1}, "unknownKey"),
    ({"watch": {"namespaces": ["team-*"]}}, "/watch/namespaces/0"),
    ({"watch": {"namespaces": ["Apps"]}}, "/watch/namespaces/0"),
    ({"watch": {"namespaces": "apps"}}, "/watch/namespaces"),
    ({"watch": {"namespaces": ["apps", "apps"]}}, "/watch/namespaces"),
    ({"vault": {"address": "vault:8200"}}, "/vault/address"),
    ({"vault": {"address": "https://vault:8200\n  - name: EVIL"}}, "/vault/address"),
    ({"vault": {"address": "https://v:8200", "ca": {"key": "../etc/passwd"}}}, "/vault/ca/key"),
    ({"vault": {"address": "https://v:8200", "ca": {"configMap": "Not_A_Name"}}}, "/vault/ca/configMap"),
    ({"auth": {"method": "ldap"}}, "/auth/method"),
    ({"auth": {"role": ""}}, "/auth/role"),
    ({"logFormat": "yaml"}, "/logFormat"),
    ({"logLevel": "verbose"}, "/logLevel"),
    ({"extraEnv": [{"name": "X", "value": 5}]}, "/extraEnv/0/value"),
    ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"metrics": {"port": 0}}, "/metrics/port"),
    ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor/interval"),
    ({"podDisruptionBudget": {"maxUnavailable": 0}}, "/podDisruptionBudget/maxUnavailable"),
    ({"resources": {"requests": {"cpu": 1}}}, "/resources/requests/cpu"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_bad_values_are_refused_by_the_schema(values: Obj, where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        render_chart(values)
    assert where in str(refused.value)


BAD_COMBINATIONS: list[tuple[Obj, str]] = [
    ({"vault": {"address": "https://v:8200", "ca": {"configMap": "a", "secret": "b"}}}, "vault.ca"),
    ({"replicas": 3, "leaderElection": False}, "leaderElection"),
    ({"extraEnv": [{"name": "VAULT_ADDR", "value": "https://elsewhere"}]}, "extraEnv: VAULT_ADDR"),
    ({"extraEnv": [{"name": "VAULTSYNC_WATCH_NAMESPACES", "value": "*"}]}, "VAULTSYNC_WATCH_NAMESPACES"),
    ({"watch": {"namespaces": [OPERATOR_NAMESPACE]}}, "watch.namespaces"),
    (
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
        "metrics.service.enabled",
    ),
]


@pytest.mark.parametrize(("values", "where"), BAD_COMBINATIONS, ids=[w for _, w in BAD_COMBINATIONS])
def test_bad_combinations_are_refused_by_the_templates(values: Obj, where: str) -> None:
    with pytest.raises(helm.HelmRenderError) as refused:
        render_chart(values)
    assert where in str(refused.value)


def test_notes_say_what_to_do() -> None:
    notes = render_texts({"watch": {"namespaces": ["apps"]}})["vaultsync/templates/NOTES.txt"]
    assert "vaultsync-system/vaultsync" in notes
    assert "apps" in notes
    assert "doctor" in notes


def leaf_keys(values: Obj, prefix: str = "") -> list[str]:
    keys = []
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and value and name not in ("resources", "nodeSelector"):
            keys.extend(leaf_keys(value, f"{path}."))
        else:
            keys.append(path)
    return keys


def test_every_value_is_documented_in_the_readme_and_the_schema() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        defaults, schema = chart.values, chart.schema
    assert schema is not None
    readme = (CHART_DIR / "README.md").read_text()
    for path in leaf_keys(defaults):
        last = path.rsplit(".", 1)[-1]
        assert f"`{path}`" in readme or (f".{last}`" in readme and path.rsplit(".", 1)[0] in readme), path
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
