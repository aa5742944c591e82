"""Argo CD, Flux and `kubectl wait` against real objects of the local stack (issue 14).

The Argo CD health check (deploy/argocd/health.lua) runs in lua5.1 on VaultSecrets read back from the API
server as the shared operator left them: Healthy (synced), Degraded (NotFound, InvalidSpec), Progressing
(before a first sync: a namespace no operator watches; and a spec change not yet observed). The same objects
are checked against the kstatus conventions that Flux's health checks and `kubectl wait` rely on, and a real
`kubectl wait --for=condition=Ready` succeeds on a syncing VaultSecret and times out on a failing one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.argocd_health import HEALTH_SCRIPT, KINDS, REPO_ROOT, flux_status, health
from tests.e2e.conftest import ValueFactory
from tests.e2e.kube import GROUP, PLURAL, VERSION, create_vaultsecret, get_vaultsecret, wait_ready
from vaultsync.devstack import kube_admin
from vaultsync.devstack.binaries import find_kubectl, find_lua
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

pytestmark = pytest.mark.usefixtures("operator")

# metav1.Condition's own validation (k8s.io/apimachinery), which kstatus and Flux expect conditions to meet.
CONDITION_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture(scope="module")
def lua() -> Path:
    return find_lua()


def read(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found = get_vaultsecret(api, namespace, name)
    assert found is not None
    return found


def assert_kstatus_conventions(obj: dict[str, Any]) -> dict[str, Any]:
    """status.observedGeneration and a Ready condition shaped as metav1.Condition, describing this very
    generation (what kstatus computes `Current` from). Returns the Ready condition."""
    generation = obj["metadata"]["generation"]
    status = obj["status"]
    assert status["observedGeneration"] == generation
    conditions = status["conditions"]
    types = [c["type"] for c in conditions]
    assert len(types) == len(set(types)), types
    for condition in conditions:
        assert set(condition) >= {"type", "status", "reason", "message", "lastTransitionTime"}, condition
        assert condition["status"] in ("True", "False", "Unknown")
        assert CONDITION_REASON.match(condition["reason"]), condition["reason"]
        assert isinstance(condition["message"], str)
        assert len(condition["message"]) <= 32768
        assert RFC3339.match(condition["lastTransitionTime"]), condition["lastTransitionTime"]
        assert condition["observedGeneration"] == generation
    # kstatus' abnormal-true conditions never contradict Ready.
    assert not any(c["type"] in ("Reconciling", "Stalled") and c["status"] == "True" for c in conditions)
    (ready,) = (c for c in conditions if c["type"] == "Ready")
    return ready


def test_health_of_real_objects_healthy_degraded_and_progressing(
    lua: Path,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    own: str,
    new_value: ValueFactory,
) -> None:
    vault_admin.kv_put(f"e2e/{namespace}/app", {"password": new_value()})
    create_vaultsecret(kube_api, namespace, "good", {"path": f"e2e/{namespace}/app"})
    create_vaultsecret(kube_api, namespace, "missing", {"path": f"e2e/{namespace}/no-such-secret"})
    # The operator's own annotation cannot be set through the spec: InvalidSpec.
    invalid = {"path": f"e2e/{namespace}/app", "target": {"annotations": {"vaultsync.io/owner": "someone"}}}
    create_vaultsecret(kube_api, namespace, "invalid", invalid)
    wait_ready(kube_api, namespace, "good")
    wait_ready(kube_api, namespace, "missing", status="False", reason="NotFound")
    wait_ready(kube_api, namespace, "invalid", status="False", reason="InvalidSpec")

    good = read(kube_api, namespace, "good")
    assert_kstatus_conventions(good)
    assert health(lua, good) == {
        "status": "Healthy",
        "message": "Synced: Secret good holds what Vault returned",
    }

    for name, reason in (("missing", "NotFound"), ("invalid", "InvalidSpec")):
        obj = read(kube_api, namespace, name)
        condition = assert_kstatus_conventions(obj)
        assert health(lua, obj) == {"status": "Degraded", "message": f"{reason}: {condition['message']}"}
        assert flux_status(obj) == "Failed"
        assert condition["message"]  # says what to do

    # Before a first sync: the object as `kubectl apply` leaves it, in a namespace no operator watches.
    create_vaultsecret(kube_api, own, "pending", {"path": f"e2e/{namespace}/app"})
    pending = read(kube_api, own, "pending")
    assert "status" not in pending
    assert health(lua, pending) == {
        "status": "Progressing",
        "message": "Waiting for the operator's first sync",
    }

    # A spec change the operator has not processed yet: the synced status of generation 1 stays, the API
    # server moves metadata.generation to 2 (status written through the status subresource, as the
    # operator writes it; then a spec patch).
    custom = client.CustomObjectsApi(kube_api)
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, own, PLURAL, "pending", {"status": good["status"]}
    )
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, own, PLURAL, "pending", {"spec": {"refreshInterval": "5m"}}
    )
    changed = read(kube_api, own, "pending")
    assert (changed["metadata"]["generation"], changed["status"]["observedGeneration"]) == (2, 1)
    assert health(lua, changed) == {
        "status": "Progressing",
        "message": "Waiting for the operator to process generation 2 (observed 1)",
    }
    assert flux_status(changed) == "InProgress"


def kubectl(stack: LocalStack, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_kubectl()), "--kubeconfig", str(stack.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_kubectl_wait_for_condition_ready(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    own: str,
    new_value: ValueFactory,
) -> None:
    vault_admin.kv_put(f"e2e/{namespace}/app", {"password": new_value()})
    create_vaultsecret(kube_api, namespace, "good", {"path": f"e2e/{namespace}/app"})
    create_vaultsecret(kube_api, namespace, "missing", {"path": f"e2e/{namespace}/no-such-secret"})

    # Right after the apply, as a CI pipeline or a Flux-less deploy script would.
    waited = kubectl(
        stack, "-n", namespace, "wait", "--for=condition=Ready", "vaultsecret/good", "--timeout=60s"
    )
    assert waited.returncode == 0, waited.stderr
    assert "vaultsecret.vaultsync.io/good condition met" in waited.stdout
    # The short name works too.
    waited = kubectl(stack, "-n", namespace, "wait", "--for=condition=Ready", "vsec/good", "--timeout=10s")
    assert waited.returncode == 0, waited.stderr

    failing = kubectl(
        stack, "-n", namespace, "wait", "--for=condition=Ready", "vaultsecret/missing", "--timeout=3s"
    )
    assert failing.returncode != 0
    assert "timed out" in failing.stderr, failing.stderr
    # And a pipeline can wait for the failure itself.
    failed = kubectl(
        stack, "-n", namespace, "wait", "--for=condition=Ready=false", "vaultsecret/missing", "--timeout=60s"
    )
    assert failed.returncode == 0, failed.stderr
    reason = kubectl(
        stack,
        "-n",
        namespace,
        "get",
        "vaultsecret/missing",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].reason}",
    )
    assert reason.stdout == "NotFound"

    # A Ready=True that describes an older generation does not satisfy kubectl wait (it compares the
    # condition's observedGeneration with metadata.generation): an object no operator watches, with the
    # synced status of generation 1, then a spec change.
    good = read(kube_api, namespace, "good")
    create_vaultsecret(kube_api, own, "stale", {"path": f"e2e/{namespace}/app"})
    custom = client.CustomObjectsApi(kube_api)
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, own, PLURAL, "stale", {"status": good["status"]}
    )
    fresh = kubectl(stack, "-n", own, "wait", "--for=condition=Ready", "vaultsecret/stale", "--timeout=10s")
    assert fresh.returncode == 0, fresh.stderr
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, own, PLURAL, "stale", {"spec": {"refreshInterval": "5m"}}
    )
    stale = kubectl(stack, "-n", own, "wait", "--for=condition=Ready", "vaultsecret/stale", "--timeout=3s")
    assert stale.returncode != 0
    assert "timed out" in stale.stderr, stale.stderr


def test_the_documented_argocd_cm_patch_adds_the_checks_and_keeps_other_settings(
    stack: LocalStack, kube_api: client.ApiClient
) -> None:
    """docs/argocd.md: `kubectl kustomize deploy/argocd | kubectl -n argocd patch configmap argocd-cm
    --type merge --patch-file /dev/stdin`, against a real argocd-cm."""
    core = client.CoreV1Api(kube_api)
    kube_admin.create_namespace(kube_api, "argocd")
    try:
        core.create_namespaced_config_map(
            "argocd",
            {"metadata": {"name": "argocd-cm"}, "data": {"url": "https://argocd.example.com"}},
        )
        rendered = kubectl(stack, "kustomize", str(REPO_ROOT / "deploy" / "argocd"))
        assert rendered.returncode == 0, rendered.stderr
        patched = subprocess.run(
            [
                str(find_kubectl()),
                "--kubeconfig",
                str(stack.kubeconfig),
                "-n",
                "argocd",
                "patch",
                "configmap",
                "argocd-cm",
                "--type",
                "merge",
                "--patch-file",
                "/dev/stdin",
            ],
            input=rendered.stdout,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert patched.returncode == 0, patched.stderr
        data = core.read_namespaced_config_map("argocd-cm", "argocd").data
        script = HEALTH_SCRIPT.read_text()
        assert data == {
            "url": "https://argocd.example.com",
            **{f"resource.customizations.health.vaultsync.io_{kind}": script for kind in KINDS},
        }
    finally:
        kube_admin.delete_namespace(kube_api, "argocd")
