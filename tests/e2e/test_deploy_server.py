"""deploy/ against the real API server (Kubernetes 1.20):

* each overlay, rendered with `kubectl kustomize` (plus the policy/v1beta1 component that 1.20 needs),
  passes a server-side dry-run apply, and fails it without the component (the dry-run really validates);
* the operator, running as a ServiceAccount bound by exactly the RBAC of each overlay, does everything it
  does (sync, rotation with rollout restart, drift, rename, Merge with its finalizer, a namespace
  ServiceAccount's identity, Events, leader election, the HMAC key) without a single refused request.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.deploy_render import (
    CLUSTER_WIDE,
    OPERATOR_NAMESPACE,
    OVERLAYS,
    PDB_V1BETA1_COMPONENT,
    SINGLE_NAMESPACE,
    WATCHED_NAMESPACE,
    render_overlay,
)
from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.kube import (
    create_vaultsecret,
    delete_vaultsecret,
    get_vaultsecret,
    patch_vaultsecret,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import (
    delete_cluster_objects,
    lease_holder,
    own_namespace,
    parse_metrics,
    service_account_kubeconfig,
    value,
)
from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

Obj = dict[str, Any]
KUBECTL = Path(sys.executable).parent / "kubectl"
RBAC_KINDS = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def kubectl(stack: LocalStack, args: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), f"--cache-dir={stack.workdir / 'kubectl-cache'}", *args],
        input=stdin,
        env={**os.environ, "KUBECONFIG": str(stack.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def as_yaml(objects: list[Obj]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


# Server-side dry-run --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def namespaces(kube_api: client.ApiClient) -> None:
    """A dry-run creates nothing, not even a Namespace it applies: the namespaces the objects live in must
    exist (the operator's, and the watched one of the single-namespace overlay)."""
    kube_admin.create_namespace(kube_api, OPERATOR_NAMESPACE)
    kube_admin.create_namespace(kube_api, WATCHED_NAMESPACE)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_server_side_dry_run(stack: LocalStack, namespaces: None, overlay: Path) -> None:
    objects = render_overlay(overlay, [PDB_V1BETA1_COMPONENT])
    result = kubectl(
        stack,
        [
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=vaultsync-deploy-test",
            "--force-conflicts",
            "-f",
            "-",
        ],
        as_yaml(objects),
    )
    assert result.returncode == 0, result.stderr
    applied = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(objects), result.stdout
    for obj in objects:
        kind = obj["kind"].lower()
        assert any(
            line.split("/")[0].split(".")[0] == kind and f"/{obj['metadata']['name']} " in line
            for line in applied
        ), (
            obj["kind"],
            obj["metadata"]["name"],
        )


def test_dry_run_rejects_policy_v1_on_kubernetes_1_20(stack: LocalStack, namespaces: None) -> None:
    """Without the component, 1.20 refuses the PodDisruptionBudget: the dry-run does validate."""
    objects = render_overlay(CLUSTER_WIDE)
    result = kubectl(stack, ["apply", "--server-side", "--dry-run=server", "-f", "-"], as_yaml(objects))
    assert result.returncode != 0
    assert "PodDisruptionBudget" in result.stderr
    assert "policy/v1" in result.stderr


# The operator under each overlay's RBAC ------------------------------------------------------------


def rbac_for_test(objects: list[Obj], operator_ns: str, watched_ns: str) -> list[Obj]:
    """The overlay's RBAC objects, moved to the test's namespaces: `vaultsync-system` -> operator_ns,
    `apps` -> watched_ns, cluster-scoped names prefixed with operator_ns. The rules are untouched."""
    moved = {OPERATOR_NAMESPACE: operator_ns, WATCHED_NAMESPACE: watched_ns}
    result = []
    for original in objects:
        if original["kind"] not in RBAC_KINDS:
            continue
        obj = copy.deepcopy(original)
        meta = obj["metadata"]
        if "namespace" in meta:
            meta["namespace"] = moved[meta["namespace"]]
        else:
            meta["name"] = f"{operator_ns}-{meta['name']}"
        if obj["kind"] == "ClusterRoleBinding" or obj.get("roleRef", {}).get("kind") == "ClusterRole":
            obj["roleRef"]["name"] = f"{operator_ns}-{obj['roleRef']['name']}"
        for subject in obj.get("subjects", []):
            subject["namespace"] = moved[subject["namespace"]]
        result.append(obj)
    return result


@pytest.fixture
def test_namespaces(kube_api: client.ApiClient) -> Iterator[tuple[str, str]]:
    with own_namespace(kube_api) as operator_ns, own_namespace(kube_api, prefix=f"{operator_ns}") as watched:
        yield operator_ns, watched


def create_deployment(api: client.ApiClient, namespace: str, name: str) -> None:
    template = {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }
    client.AppsV1Api(api).create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": template},
        },
    )


def exercise(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    """Every kind of request the operator makes to the API server, in one namespace."""
    core = client.CoreV1Api(kube_api)
    first, second, third = new_value(), new_value(), new_value()
    vault_admin.kv_put(f"e2e/{namespace}/app", {"password": first})
    create_deployment(kube_api, namespace, "web")
    create_vaultsecret(
        kube_api,
        namespace,
        "app",
        {"path": f"e2e/{namespace}/app", "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]},
    )
    wait_ready(kube_api, namespace, "app", timeout=60)

    # Rotation: Secret update, rollout restart (patch of the Deployment).
    vault_admin.kv_put(f"e2e/{namespace}/app", {"password": second})
    patch_vaultsecret(
        kube_api, namespace, "app", {"metadata": {"annotations": {"vaultsync.io/refresh": "1"}}}
    )

    def restarted() -> bool:
        deployment = client.AppsV1Api(kube_api).read_namespaced_deployment("web", namespace)
        annotations = deployment.spec.template.metadata.annotations or {}
        return "vaultsync.io/restartedAt" in annotations

    wait_for(restarted, timeout=30, what="the rollout restart")
    assert secret_data(kube_api, namespace, "app") == {"password": second.encode()}

    # Drift: the watch sees the deletion, the Secret is created again.
    core.delete_namespaced_secret("app", namespace)
    wait_for(lambda: secret_data(kube_api, namespace, "app") is not None, timeout=30, what="drift repair")

    # Rename: the new Secret is written, the old one deleted.
    patch_vaultsecret(kube_api, namespace, "app", {"spec": {"target": {"name": "app-renamed"}}})
    wait_for(lambda: secret_data(kube_api, namespace, "app") is None, timeout=30, what="old Secret deleted")
    assert secret_data(kube_api, namespace, "app-renamed") == {"password": second.encode()}

    # Merge into a Secret we did not create: a finalizer, our keys in, and out again on deletion.
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "shared"}, "stringData": {"theirs": "kept"}}
    )
    vault_admin.kv_put(f"e2e/{namespace}/merge", {"ours": third})
    create_vaultsecret(
        kube_api,
        namespace,
        "merge",
        {"path": f"e2e/{namespace}/merge", "target": {"name": "shared", "creationPolicy": "Merge"}},
    )
    wait_ready(kube_api, namespace, "merge", timeout=30)
    assert secret_data(kube_api, namespace, "shared") == {"theirs": b"kept", "ours": third.encode()}
    assert "vaultsync.io/merge-cleanup" in (get_vaultsecret(kube_api, namespace, "merge") or {})[
        "metadata"
    ].get("finalizers", [])
    delete_vaultsecret(kube_api, namespace, "merge")
    wait_for(lambda: get_vaultsecret(kube_api, namespace, "merge") is None, timeout=30, what="merge deleted")
    assert secret_data(kube_api, namespace, "shared") == {"theirs": b"kept"}

    # A namespace ServiceAccount's identity: TokenRequest.
    kube_admin.create_service_account(kube_api, namespace, "reader")
    policy = f"rbac-{namespace}"
    vault_admin.write_policy(policy, f'path "secret/data/e2e/{namespace}/*" {{ capabilities = ["read"] }}\n')
    vault_admin.kubernetes_role(policy, ["reader"], [namespace], [policy])
    create_vaultsecret(
        kube_api,
        namespace,
        "as-reader",
        {"path": f"e2e/{namespace}/app", "auth": {"serviceAccountName": "reader", "role": policy}},
    )
    wait_ready(kube_api, namespace, "as-reader", timeout=30)

    # Events were posted.
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=app").items
    assert {"Synced", "Rotated", "DriftRepaired"} <= {e.reason for e in events}


@pytest.mark.parametrize("overlay", [CLUSTER_WIDE, SINGLE_NAMESPACE], ids=lambda p: p.name)
def test_the_operator_works_with_exactly_the_overlays_rbac(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    test_namespaces: tuple[str, str],
    tmp_path: Path,
    new_value: ValueFactory,
    overlay: Path,
) -> None:
    operator_ns, watched = test_namespaces
    rbac = rbac_for_test(render_overlay(overlay), operator_ns, watched)
    cluster_scoped = [o for o in rbac if "namespace" not in o["metadata"]]
    applied = kubectl(
        stack, ["apply", "--server-side", "--field-manager=vaultsync-deploy-test", "-f", "-"], as_yaml(rbac)
    )
    assert applied.returncode == 0, applied.stderr
    try:
        kubeconfig = service_account_kubeconfig(
            stack, kube_api, operator_ns, "vaultsync", tmp_path / "kubeconfig"
        )
        deployment = next(o for o in render_overlay(overlay) if o["kind"] == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env_of_overlay = {e["name"]: e.get("value") for e in container["env"]}
        env = {
            **operator_env(stack, operator_token_file, watch=watched),
            "KUBECONFIG": str(kubeconfig),
            "VAULTSYNC_NAMESPACE": operator_ns,
            "VAULTSYNC_LEADER_ELECTION": env_of_overlay["VAULTSYNC_LEADER_ELECTION"],
        }
        if overlay == CLUSTER_WIDE:
            # Cluster-wide: a glob makes the operator watch Secrets and VaultSecrets of all namespaces.
            env["VAULTSYNC_WATCH_NAMESPACES"] = f"{watched}*"
        process = OperatorProcess(env, tmp_path / "operator.log")
        process.start()
        try:
            wait_for(lambda: lease_holder(kube_api, operator_ns) is not None, timeout=30, what="the Lease")
            exercise(kube_api, vault_admin, watched, new_value)
            samples = parse_metrics(process.metrics())
            refused = {
                s.labels["code"]: s.value
                for s in samples
                if s.name == "vaultsync_kubernetes_api_errors_total" and s.labels["code"] in ("401", "403")
            }
            assert refused == {}, refused
            assert value(samples, "vaultsync_leader") == 1
        finally:
            assert process.stop() == 0
        log = process.log_text()
        # A refused request shows as "403 Forbidden: ... is forbidden: User ... cannot ..." (ApiError), or as
        # kopf's "Not enough permissions ..."; never a bare "403" (timestamps contain such digits).
        for refusal in ("Forbidden", "forbidden", "Unauthorized", "permissions"):
            assert refusal not in log, [line for line in log.splitlines() if refusal in line][:5]
    finally:
        delete_cluster_objects(
            kube_api,
            [o["metadata"]["name"] for o in cluster_scoped if o["kind"] == "ClusterRoleBinding"],
            [o["metadata"]["name"] for o in cluster_scoped if o["kind"] == "ClusterRole"],
        )
