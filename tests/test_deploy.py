"""Pure checks of the kustomize manifests under deploy/ (no API server).

Each overlay is rendered with `kubectl kustomize` (the venv's kubectl) and checked: least-privilege RBAC
with a comment above every rule in the source files, a hardened Deployment, consistent bindings. The
server-side dry-run against a real API server lives elsewhere and reuses tests/deploy_render.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_render import (
    BASE,
    CLUSTER_WIDE,
    DEPLOY_DIR,
    OPERATOR_NAMESPACE,
    OVERLAYS,
    PDB_V1BETA1_COMPONENT,
    REPO_ROOT,
    SINGLE_NAMESPACE,
    WATCHED_NAMESPACE,
    find,
    render_overlay,
)

Obj = dict[str, Any]
RBAC_ROLE_KINDS = ("Role", "ClusterRole")
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "vaultsync", "namespace": OPERATOR_NAMESPACE}
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
# Verbs that would let the operator grant itself more than it has.
ESCALATING_VERBS = {"escalate", "bind", "impersonate"}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {overlay.name: render_overlay(overlay) for overlay in (BASE, *OVERLAYS)}


@pytest.fixture(scope="module", params=[o.name for o in OVERLAYS])
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[Obj]]) -> list[Obj]:
    return rendered[request.param]


def rules_of(objects: Sequence[Obj]) -> Iterator[tuple[str, Obj]]:
    for obj in objects:
        if obj["kind"] in RBAC_ROLE_KINDS:
            for rule in obj.get("rules") or []:
                yield f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}", rule


def yaml_sources() -> list[Path]:
    return sorted(p for p in DEPLOY_DIR.rglob("*.yaml"))


# ------------------------------------------------------------------------------------- rendering


def test_every_overlay_renders(rendered: dict[str, list[Obj]]) -> None:
    for name, objects in rendered.items():
        kinds = {o["kind"] for o in objects}
        assert {"Namespace", "CustomResourceDefinition", "ServiceAccount", "Deployment"} <= kinds, name


def test_cluster_wide_is_the_base(rendered: dict[str, list[Obj]]) -> None:
    assert rendered[CLUSTER_WIDE.name] == rendered[BASE.name]


def test_the_crd_is_the_one_in_crds(rendered: dict[str, list[Obj]]) -> None:
    crd_file = yaml.safe_load((REPO_ROOT / "crds" / "vaultsecrets.yaml").read_text())
    crd = find(rendered[BASE.name], "CustomResourceDefinition", "vaultsecrets.vaultsync.io")
    assert crd == crd_file


def test_namespaced_objects_have_their_namespace(overlay: list[Obj]) -> None:
    for obj in overlay:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert namespace is None, obj["metadata"]["name"]
        else:
            assert namespace in (OPERATOR_NAMESPACE, WATCHED_NAMESPACE), (
                obj["kind"],
                obj["metadata"]["name"],
            )


def test_pdb_policy_v1_by_default_v1beta1_with_the_component() -> None:
    for overlay in OVERLAYS:
        default = find(render_overlay(overlay), "PodDisruptionBudget", "vaultsync")
        legacy = [
            o for o in render_overlay(overlay, [PDB_V1BETA1_COMPONENT]) if o["kind"] == "PodDisruptionBudget"
        ]
        assert default["apiVersion"] == "policy/v1"
        assert len(legacy) == 1
        assert legacy[0]["apiVersion"] == "policy/v1beta1"
        assert legacy[0]["spec"] == default["spec"]


# ------------------------------------------------------------------------------------------- RBAC


def _rule_items(text: str) -> Iterator[tuple[int, bool]]:
    """(line number, has a comment above) for each rule of each Role/ClusterRole in a YAML file's text."""
    line_offset = 0
    for doc in re.split(r"(?m)^---\s*$", text):
        lines = doc.splitlines()
        kind_match = re.search(r"(?m)^kind:\s*(\S+)", doc)
        kind = kind_match.group(1) if kind_match else ""
        if kind in RBAC_ROLE_KINDS:
            start = next((i for i, line in enumerate(lines) if re.match(r"^rules:\s*$", line)), None)
            item_indent: int | None = None
            for i in range(start + 1 if start is not None else len(lines), len(lines)):
                line = lines[i]
                stripped = line.strip()
                if not stripped or stripped.startswith("#"):
                    continue
                indent = len(line) - len(line.lstrip())
                if indent == 0:
                    break  # the next top-level key: the rules are over
                if stripped.startswith("- ") and (item_indent is None or indent == item_indent):
                    item_indent = indent
                    previous = next(
                        (lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()),
                        "",
                    )
                    yield line_offset + i + 1, previous.startswith("#")
        line_offset += len(lines) + 1


def test_every_rule_has_a_comment_in_the_source() -> None:
    checked = 0
    for path in yaml_sources():
        text = path.read_text()
        docs = [d for d in yaml.safe_load_all(text) if d]
        rules_in_yaml = sum(len(d.get("rules") or []) for d in docs if d.get("kind") in RBAC_ROLE_KINDS)
        items = list(_rule_items(text))
        # The text scan must see exactly the rules YAML sees (e.g. no flow-style rules it would miss).
        assert len(items) == rules_in_yaml, path
        uncommented = [f"{path.relative_to(REPO_ROOT)}:{line}" for line, ok in items if not ok]
        assert uncommented == []
        checked += len(items)
    assert checked >= 15


def test_no_wildcards_or_escalation(overlay: list[Obj]) -> None:
    for where, rule in rules_of(overlay):
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in value for value in rule.get(field) or []), (where, rule)
        assert not ESCALATING_VERBS & set(rule["verbs"]), (where, rule)


def test_bindings_bind_the_operator_to_rendered_roles(overlay: list[Obj]) -> None:
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        for o in overlay
        if o["kind"] in RBAC_ROLE_KINDS
    }
    bindings = [o for o in overlay if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings
    for binding in bindings:
        assert binding["subjects"] == [SERVICE_ACCOUNT]
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        assert (ref["kind"], namespace, ref["name"]) in roles, binding["metadata"]["name"]
    bound = {(b["roleRef"]["kind"], b["metadata"].get("namespace"), b["roleRef"]["name"]) for b in bindings}
    for kind, namespace, name in roles:
        assert (kind, namespace if kind == "Role" else None, name) in bound, f"{kind} {name} is not bound"


def _grants(
    objects: Sequence[Obj], kind: str, name: str, namespace: str | None = None
) -> set[tuple[str, str, str]]:
    role = find(objects, kind, name, namespace)
    return {
        (group, resource, verb)
        for rule in role["rules"]
        if not rule.get("resourceNames")
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_cluster_wide_grants(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered[CLUSTER_WIDE.name]
    grants = _grants(objects, "ClusterRole", "vaultsync")
    # Exactly the requests the operator makes (tests/e2e/test_deploy_server.py runs it with these rules).
    expected = {
        *(("vaultsync.io", "vaultsecrets", v) for v in ("get", "list", "watch", "patch")),
        ("vaultsync.io", "vaultsecrets/status", "patch"),
        ("vaultsync.io", "vaultsecrets/finalizers", "update"),
        *(("", "secrets", v) for v in ("get", "list", "watch", "create", "update", "delete")),
        ("", "events", "create"),
        ("", "serviceaccounts/token", "create"),
        *(("apps", r, "patch") for r in ("deployments", "statefulsets", "daemonsets")),
    }
    assert grants == expected
    assert _grants(objects, "ClusterRole", "vaultsync-discovery") == {
        *(("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("get", "list", "watch")),
        *(("", "namespaces", v) for v in ("get", "list", "watch")),
    }
    # The Lease: create (unnamed), get and update of vaultsync-leader only.
    lease_role = find(objects, "Role", "vaultsync", OPERATOR_NAMESPACE)
    assert lease_role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["vaultsync-leader"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    # The operator never reads ServiceAccounts themselves, only requests their tokens.
    assert not any(r == "serviceaccounts" for _, r, _ in grants)


def test_single_namespace_grants(rendered: dict[str, list[Obj]]) -> None:
    cluster = rendered[CLUSTER_WIDE.name]
    single = rendered[SINGLE_NAMESPACE.name]
    cluster_roles = [o for o in single if o["kind"] == "ClusterRole"]
    assert [o["metadata"]["name"] for o in cluster_roles] == ["vaultsync-discovery"]
    assert [o["metadata"]["name"] for o in single if o["kind"] == "ClusterRoleBinding"] == [
        "vaultsync-discovery"
    ]
    for _, rule in rules_of(cluster_roles):
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        assert set(rule["resources"]) <= {"customresourcedefinitions", "namespaces"}

    # The Role in the watched namespace grants what the cluster-wide ClusterRole grants.
    in_apps = _grants(single, "Role", "vaultsync", WATCHED_NAMESPACE)
    cluster_wide = _grants(cluster, "ClusterRole", "vaultsync")
    assert in_apps == cluster_wide

    # The HMAC key: get on that one Secret, create (which resourceNames cannot narrow); nothing else.
    hmac_role = find(single, "Role", "vaultsync-hmac-key", OPERATOR_NAMESPACE)
    assert hmac_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["vaultsync-hmac-key"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    # Secrets anywhere else: not granted.
    for obj in single:
        if obj["kind"] in RBAC_ROLE_KINDS and any("secrets" in r["resources"] for r in obj["rules"]):
            assert obj["kind"] == "Role", obj["metadata"]["name"]
            assert obj["metadata"]["namespace"] in (WATCHED_NAMESPACE, OPERATOR_NAMESPACE)


# ------------------------------------------------------------------------------------- Deployment


def _container(objects: Sequence[Obj]) -> tuple[Obj, Obj]:
    deployment = find(objects, "Deployment", "vaultsync", OPERATOR_NAMESPACE)
    pod = deployment["spec"]["template"]["spec"]
    containers = pod["containers"]
    assert len(containers) == 1
    return pod, containers[0]


def test_deployment_security_context(overlay: list[Obj]) -> None:
    pod, container = _container(overlay)
    for context in (pod["securityContext"], container["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 65532
        assert context["runAsGroup"] == 65532
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in sc or sc["privileged"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == "vaultsync"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_the_default_identity_logs_in_with_a_vault_audience_token(overlay: list[Obj]) -> None:
    pod, container = _container(overlay)
    env = {e["name"]: e.get("value") for e in container["env"]}
    token_file = Path(env["VAULTSYNC_TOKEN_FILE"])
    # Not the pod's API-server token (the default of the setting).
    assert str(token_file) != "/var/run/secrets/kubernetes.io/serviceaccount/token"
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(token_file.parent)]
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    (source,) = volume["projected"]["sources"]
    assert source == {
        "serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": token_file.name}
    }


def test_deployment_runtime_settings(overlay: list[Obj]) -> None:
    deployment = find(overlay, "Deployment", "vaultsync", OPERATOR_NAMESPACE)
    # HA by default: two replicas elect a leader; a rollout starts a standby before it stops an old pod.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    _, container = _container(overlay)
    assert container["image"] == "ghcr.io/vaultsync/vaultsync:0.1.0"
    assert container["args"] == ["run"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VAULT_ADDR"]["value"] == "https://vault.vault.svc:8200"
    assert env["VAULTSYNC_AUTH_ROLE"]["value"] == "vaultsync"
    assert env["VAULTSYNC_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["VAULTSYNC_METRICS_PORT"]["value"] == "8080"
    assert env["VAULTSYNC_HEALTH_PORT"]["value"] == "8081"
    assert env["VAULTSYNC_LOG_FORMAT"]["value"] == "json"
    assert env["VAULTSYNC_LEADER_ELECTION"]["value"] == "true"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "160Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_watch_namespaces(rendered: dict[str, list[Obj]]) -> None:
    _, cluster = _container(rendered[CLUSTER_WIDE.name])
    _, single = _container(rendered[SINGLE_NAMESPACE.name])
    assert "VAULTSYNC_WATCH_NAMESPACES" not in {e["name"] for e in cluster["env"]}
    env = {e["name"]: e.get("value") for e in single["env"]}
    assert env["VAULTSYNC_WATCH_NAMESPACES"] == WATCHED_NAMESPACE


def test_metrics_service_selects_the_pod(overlay: list[Obj]) -> None:
    service = find(overlay, "Service", "vaultsync-metrics", OPERATOR_NAMESPACE)
    deployment = find(overlay, "Deployment", "vaultsync", OPERATOR_NAMESPACE)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("metrics", "metrics")]
