"""The default-identity fence (VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES), with an operator of the test's own.

A namespace outside the list cannot use the operator's own Vault identity: its VaultSecret without
`spec.auth` gets AuthFailed and nothing is read from Vault for it (OpenBao's audit log shows no request),
even for a path the operator's own policy allows. With `spec.auth.serviceAccountName` (the fix the message
gives) the same namespace syncs as its own identity.
"""

from __future__ import annotations

from pathlib import Path

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
from tests.e2e.vault_audit import AuditLog
from tests.e2e.vault_setup_doc import yaml_block
from vaultsync.devstack import kube_admin
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
