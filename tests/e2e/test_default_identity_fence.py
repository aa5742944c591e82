"""The default identity's scope: the fence (VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES), no tenant overrides, and
its own token audience.

A namespace outside the list cannot use the operator's own Vault identity: its VaultSecret without
`spec.auth` gets AuthFailed and nothing is read from Vault for it (OpenBao's audit log shows no request),
even for a path the operator's own policy allows. With `spec.auth.serviceAccountName` (the fix the message
gives) the same namespace syncs as its own identity. A VaultSecret of the default identity cannot choose the
auth mount or role it logs in with (InvalidSpec, no login), and the operator's token file is a token for Vault
only: the API server refuses it.
"""

from __future__ import annotations

import secrets
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import hvac
import pytest
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
from tests.e2e.kube import create_vaultsecret, get_secret, secret_data, wait_for, wait_ready
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.vault_audit import AuditLog, audit_hash
from tests.e2e.vault_setup_doc import yaml_block
from vaultsync.devstack import kube_admin
from vaultsync.devstack.demo import (
    KUBERNETES_AUTH_MOUNT,
    OPERATOR_NAMESPACE,
    OPERATOR_ROLE,
    OPERATOR_SERVICE_ACCOUNT,
    configure_kubernetes_auth,
)
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin


def test_namespace_outside_the_allow_list_gets_auth_failed_and_nothing_is_read(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    new_value: ValueFactory,
    secret_values: set[str],
    tmp_path: Path,
) -> None:
    glob, (open_ns, fenced_ns) = own_namespaces(kube_api, "open", "fenced")
    try:
        open_value, fenced_value, tenant_value = new_value(), new_value(), new_value()
        # Both paths are inside the operator's own policy (secret/data/e2e/*).
        vault_admin.kv_put(f"e2e/{open_ns}/db", {"password": open_value})
        vault_admin.kv_put(f"e2e/{fenced_ns}/db", {"password": fenced_value})
        env = {
            **operator_env(stack, operator_token_file, watch=glob),
            # A glob, like the watch list: `<prefix>-open*` matches only the open namespace.
            "VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES": f"{open_ns}*",
        }
        audit = AuditLog(stack.vault_audit_log)
        with running_operator(env, tmp_path / "operator.log") as operator:
            create_vaultsecret(kube_api, open_ns, "db", {"path": f"e2e/{open_ns}/db"})
            wait_ready(kube_api, open_ns, "db", timeout=60)
            assert secret_data(kube_api, open_ns, "db") == {"password": open_value.encode()}
            victim = get_secret(kube_api, open_ns, "db")
            assert victim is not None

            mark = audit.mark()
            create_vaultsecret(kube_api, fenced_ns, "own", {"path": f"e2e/{fenced_ns}/db"})
            create_vaultsecret(kube_api, fenced_ns, "steal", {"path": f"e2e/{open_ns}/db"})
            for name in ("own", "steal"):
                condition = wait_ready(
                    kube_api, fenced_ns, name, status="False", reason="AuthFailed", timeout=60
                )
                message = condition["message"]
                assert f"namespace {fenced_ns} may not use the operator's own Vault identity" in message
                assert "VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES" in message
                assert "spec.auth.serviceAccountName" in message
            # Retried with backoff (1 s, 2 s, 4 s, ...): several attempts, each refused before any request.
            wait_for(
                lambda: operator.log_text().count(f"{fenced_ns}/steal: AuthFailed") >= 3,
                timeout=60,
                what="three attempts of the fenced VaultSecret",
            )
            assert audit.count(f"secret/data/e2e/{fenced_ns}/db", since=mark) == 0
            assert audit.count(f"secret/data/e2e/{open_ns}/db", since=mark) == 0
            assert get_secret(kube_api, fenced_ns, "own") is None
            assert get_secret(kube_api, fenced_ns, "steal") is None
            after = get_secret(kube_api, open_ns, "db")
            assert after is not None
            assert after.metadata.resource_version == victim.metadata.resource_version

            # The fix the message gives: a ServiceAccount of the namespace and a role of its own (docs, 4).
            run = DocRunner(stack, tmp_path / "doc-home")
            kube_admin.wait_for_service_account(kube_api, fenced_ns, "default")
            for block in ("tenant-serviceaccount", "tenant-policy", "tenant-kubernetes-role"):
                run(block, TENANT_NS=fenced_ns)
            vault_admin.kv_put(f"tenants/{fenced_ns}/db", {"password": tenant_value})
            create_from_doc(kube_api, yaml_block("vaultsecret-kubernetes", {"team-a": fenced_ns}))
            wait_ready(kube_api, fenced_ns, "db", timeout=60)
            assert secret_data(kube_api, fenced_ns, "db") == {"password": tenant_value.encode()}
        assert_no_leaks(operator.log_text(), secret_values)
    finally:
        delete_namespaces(kube_api, [open_ns, fenced_ns])


def test_default_identity_refuses_a_tenant_chosen_auth_mount_and_role(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator: OperatorProcess,
    namespace: str,
) -> None:
    """A tenant who controls an auth mount names it (and a role) for the operator's own identity: InvalidSpec
    naming the fields, and Vault sees no login at that mount, so the operator's JWT never reaches it."""
    mount, role = f"tenant-{secrets.token_hex(3)}", f"evil-{secrets.token_hex(3)}"
    # The tenant's mount: a kubernetes method it could point at a TokenReview endpoint of its own.
    configure_kubernetes_auth(stack, kube_api, vault_admin, mount=mount)
    audit = AuditLog(stack.vault_audit_log)
    mark = audit.mark()
    path = f"e2e/{namespace}/db"
    create_vaultsecret(kube_api, namespace, "mount", {"path": path, "auth": {"mount": mount, "role": role}})
    create_vaultsecret(kube_api, namespace, "role", {"path": path, "auth": {"role": role}})
    for name, fields in (("mount", "spec.auth.mount and spec.auth.role"), ("role", "spec.auth.role")):
        condition = wait_ready(kube_api, namespace, name, status="False", reason="InvalidSpec", timeout=60)
        assert f"{fields} may not be set without spec.auth.serviceAccountName" in condition["message"]
        assert "VAULTSYNC_ALLOW_DEFAULT_IDENTITY_OVERRIDES" in condition["message"]
    assert audit.count(f"auth/{mount}/login", since=mark) == 0
    # No login with the tenant's role at any mount (the audit log shows the role HMAC'd).
    hashed_role = audit_hash(vault_admin, role)
    logins = [e for e in audit.entries(mark) if str(e["request"].get("path", "")).endswith("/login")]
    assert [e for e in logins if (e["request"].get("data") or {}).get("role") == hashed_role] == []
    assert audit.count(f"secret/data/{path}", since=mark) == 0
    assert get_secret(kube_api, namespace, "mount") is None


def test_the_operators_token_file_is_refused_by_the_api_server_and_logs_in_to_vault(
    stack: LocalStack, kube_api: client.ApiClient, operator_token_file: Path
) -> None:
    """The default identity's JWT (audience `vault`, as deploy/ projects it) is no Kubernetes credential;
    the operator's Vault role requires that audience, so the API-server token is refused by Vault."""
    jwt = operator_token_file.read_text().strip()
    request = urllib.request.Request(  # noqa: S310 - https to the local API server
        f"{stack.api_url}/api/v1/namespaces/{OPERATOR_NAMESPACE}/secrets",
        headers={"Authorization": f"Bearer {jwt}"},
    )
    tls = ssl.create_default_context(cafile=str(stack.ca_cert))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=tls, timeout=10)  # noqa: S310
    assert refused.value.code == 401

    verify: str | bool = str(stack.vault_ca_cert) if stack.vault_ca_cert else True
    vault = hvac.Client(url=stack.vault_addr, verify=verify)
    try:
        login = vault.auth.kubernetes.login(OPERATOR_ROLE, jwt, mount_point=KUBERNETES_AUTH_MOUNT)
        assert "vaultsync-e2e" in login["auth"]["policies"]
        vault.auth.token.revoke_self()
        api_token = kube_admin.request_token(
            kube_api, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, expiration_seconds=600
        )
        with pytest.raises(hvac.exceptions.Forbidden):
            hvac.Client(url=stack.vault_addr, verify=verify).auth.kubernetes.login(
                OPERATOR_ROLE, api_token, mount_point=KUBERNETES_AUTH_MOUNT
            )
    finally:
        vault.adapter.close()
