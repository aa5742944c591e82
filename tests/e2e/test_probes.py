"""Liveness (/healthz) and readiness (/readyz) of real operators.

Readiness means "connected to the API server and its managed-Secret watch has listed"; Vault being sealed
or unreachable shows in the body but never makes the operator unready (restarting it would not help).
Liveness fails only when the event loop is stuck (tests/unit/test_health.py), never because of Vault.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.conftest import operator_env
from tests.e2e.kube import wait_for
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import (
    bind_cluster_role,
    delete_cluster_objects,
    http_get,
    own_namespace,
    service_account_kubeconfig,
)
from vaultsync.devstack.stack import LocalStack

# The kubelet's probe timeout in deploy/base/deployment.yaml is 5 s: /readyz must answer well within it.
PROBE_TIMEOUT = 5.0


def healthz(operator: OperatorProcess) -> tuple[int, str]:
    return http_get(f"http://127.0.0.1:{operator.health_port}/healthz", timeout=PROBE_TIMEOUT)


def readyz(operator: OperatorProcess) -> tuple[int, str]:
    return http_get(f"http://127.0.0.1:{operator.health_port}/readyz", timeout=PROBE_TIMEOUT)


def test_ready_and_live_with_vault_ok(operator: OperatorProcess) -> None:
    assert healthz(operator) == (200, "ok\n")
    assert readyz(operator) == (200, "ok; vault: ok\n")


def test_sealed_vault_keeps_the_operator_ready_and_live(stack: LocalStack, operator: OperatorProcess) -> None:
    stack.seal_vault()
    try:
        status, body = readyz(operator)
        assert (status, body) == (200, "ok; vault: sealed\n")
        assert healthz(operator) == (200, "ok\n")
    finally:
        stack.unseal_vault()
    wait_for(lambda: readyz(operator) == (200, "ok; vault: ok\n"), timeout=30, what="vault: ok again")


def test_unreachable_vault_keeps_the_operator_ready_and_answers_in_time(
    stack: LocalStack, operator: OperatorProcess
) -> None:
    stack.pause_vault()
    try:
        started = time.monotonic()
        status, body = readyz(operator)
        took = time.monotonic() - started
        assert (status, body) == (200, "ok; vault: unreachable\n")
        # Vault hangs; the check is bounded so that the probe answers before the kubelet gives up.
        assert took < PROBE_TIMEOUT - 1, took
        assert healthz(operator) == (200, "ok\n")
    finally:
        stack.resume_vault()
    wait_for(lambda: readyz(operator) == (200, "ok; vault: ok\n"), timeout=30, what="vault: ok again")


@pytest.fixture
def restricted(kube_api: client.ApiClient, stack: LocalStack, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A namespace and a kubeconfig of a ServiceAccount that may do everything an operator of that namespace
    needs except list and watch Secrets."""
    with own_namespace(kube_api) as namespace:
        rbac = client.RbacAuthorizationV1Api(kube_api)
        discovery = f"{namespace}-discovery"
        rbac.create_cluster_role(
            {
                "metadata": {"name": discovery},
                "rules": [
                    {
                        "apiGroups": ["apiextensions.k8s.io"],
                        "resources": ["customresourcedefinitions"],
                        "verbs": ["get", "list", "watch"],
                    },
                    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
                ],
            }
        )
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "operator"},
                "rules": [
                    {
                        "apiGroups": ["vaultsync.io"],
                        "resources": ["vaultsecrets"],
                        "verbs": ["get", "list", "watch", "patch"],
                    },
                    {"apiGroups": ["vaultsync.io"], "resources": ["vaultsecrets/status"], "verbs": ["patch"]},
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]},
                    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
                ],
            },
        )
        subject = [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}]
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "operator"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"},
                "subjects": subject,
            },
        )
        bind_cluster_role(kube_api, discovery, discovery, namespace, "operator")
        kubeconfig = service_account_kubeconfig(
            stack, kube_api, namespace, "operator", tmp_path / "kubeconfig"
        )
        try:
            yield namespace, kubeconfig
        finally:
            delete_cluster_objects(kube_api, [discovery], [discovery])


def test_not_ready_until_the_secret_watch_lists(
    kube_api: client.ApiClient,
    stack: LocalStack,
    operator_token_file: Path,
    restricted: tuple[str, Path],
    tmp_path: Path,
) -> None:
    namespace, kubeconfig = restricted
    env = {
        **operator_env(stack, operator_token_file, watch=namespace),
        "KUBECONFIG": str(kubeconfig),
        "VAULTSYNC_NAMESPACE": namespace,
    }
    process = OperatorProcess(env, tmp_path / "operator.log")
    process.start(wait_ready=False)
    try:
        wait_for(lambda: _answers(process), timeout=60, what="the health port to answer")
        # The API server refuses the Secret list: alive, but not ready, for as long as that lasts.
        for _ in range(5):
            assert healthz(process) == (200, "ok\n")
            status, body = readyz(process)
            assert status == 503, body
            assert body == "not ready: Kubernetes API not listed yet; vault: ok\n"
            time.sleep(1)
        assert process.process is not None and process.process.poll() is None, "the operator exited"

        client.RbacAuthorizationV1Api(kube_api).create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "watch-secrets"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}],
            },
        )
        client.RbacAuthorizationV1Api(kube_api).create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "watch-secrets"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "watch-secrets"},
                "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
            },
        )
        # The watch retries with backoff (at most 30 s apart).
        wait_for(lambda: readyz(process) == (200, "ok; vault: ok\n"), timeout=75, what="ready")
        assert "watch of managed Secrets failed (403" in process.log_text()
    finally:
        assert process.stop() == 0


def _answers(process: OperatorProcess) -> bool:
    if process.process is not None and process.process.poll() is not None:
        raise AssertionError(
            f"the operator exited with {process.process.returncode}: {process.log_text()[-2000:]}"
        )
    try:
        return healthz(process)[0] == 200
    except OSError:
        return False
