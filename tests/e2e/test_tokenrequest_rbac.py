"""The RBAC spec.auth.serviceAccountName needs: `create` on serviceaccounts/token (docs/vault-setup.md, 7).

An operator of the test's own runs as a ServiceAccount with the rules of deploy/'s ClusterRoles (`vaultsync`
and `vaultsync-discovery`), first without the TokenRequest rule: a VaultSecret with spec.auth gets AuthFailed
naming the missing permission. Then the rule from the docs is added, and the same VaultSecret syncs.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.identity_support import (
    DocRunner,
    assert_no_leaks,
    create_from_doc,
    delete_namespaces,
    own_namespaces,
    running_operator,
)
from tests.e2e.kube import get_secret, secret_data, wait_ready
from tests.e2e.vault_setup_doc import yaml_block
from vaultsync.devstack import kube_admin
from vaultsync.devstack.demo import OPERATOR_NAMESPACE, repo_root
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

DEPLOY_CLUSTER_ROLES = ("deploy/base/rbac-cluster.yaml", "deploy/base/rbac-discovery.yaml")


def _deploy_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for manifest in DEPLOY_CLUSTER_ROLES:
        for doc in yaml.safe_load_all((repo_root() / manifest).read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "ClusterRole":
                rules += doc["rules"]
    return rules


def _is_token_rule(rule: dict[str, Any]) -> bool:
    return "serviceaccounts/token" in rule.get("resources", [])


def _kubeconfig(stack: LocalStack, token: str, path: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": stack.api_url, "certificate-authority": str(stack.ca_cert)}}
        ],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return path


def test_tokenrequest_needs_create_on_serviceaccounts_token(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    vault_kubernetes_auth: str,
    operator_token_file: Path,
    new_value: ValueFactory,
    secret_values: set[str],
    tmp_path: Path,
) -> None:
    rbac = client.RbacAuthorizationV1Api(kube_api)
    name = f"vaultsync-rbac-{secrets.token_hex(3)}"
    rules = _deploy_rules()
    (token_rule,) = [rule for rule in rules if _is_token_rule(rule)]
    assert token_rule == yaml_block("tokenrequest-rbac")[0]
    kube_admin.create_service_account(kube_api, OPERATOR_NAMESPACE, name)
    rbac.create_cluster_role(
        {"metadata": {"name": name}, "rules": [r for r in rules if not _is_token_rule(r)]}
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": OPERATOR_NAMESPACE}],
        }
    )
    glob, (namespace,) = own_namespaces(kube_api, "rbac")
    try:
        kube_admin.wait_for_service_account(kube_api, namespace, "default")
        run = DocRunner(stack, tmp_path / "doc-home")
        for block in ("tenant-serviceaccount", "tenant-policy", "tenant-kubernetes-role"):
            run(block, TENANT_NS=namespace)
        value = new_value()
        vault_admin.kv_put(f"tenants/{namespace}/db", {"password": value})
        kube_token = kube_admin.request_token(kube_api, OPERATOR_NAMESPACE, name)
        env = {
            **operator_env(stack, operator_token_file, watch=glob),
            "KUBECONFIG": str(_kubeconfig(stack, kube_token, tmp_path / "kubeconfig")),
        }
        with running_operator(env, tmp_path / "operator.log") as operator:
            create_from_doc(kube_api, yaml_block("vaultsecret-kubernetes", {"team-a": namespace}))
            condition = wait_ready(kube_api, namespace, "db", status="False", reason="AuthFailed", timeout=60)
            assert "may not request ServiceAccount tokens" in condition["message"]
            assert "'create' on serviceaccounts/token" in condition["message"]
            assert get_secret(kube_api, namespace, "db") is None

            rbac.patch_cluster_role(name, {"rules": rules})
            wait_ready(kube_api, namespace, "db", timeout=60)
            assert secret_data(kube_api, namespace, "db") == {"password": value.encode()}
        assert_no_leaks(operator.log_text(), secret_values | {kube_token})
    finally:
        delete_namespaces(kube_api, [namespace])
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
        client.CoreV1Api(kube_api).delete_namespaced_service_account(name, OPERATOR_NAMESPACE)
