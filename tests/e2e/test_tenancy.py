"""Tenancy against real OpenBao policies: each namespace reads Vault as its own ServiceAccount, never more.

Two tenants, set up with the commands of docs/vault-setup.md (section 4): tenant A logs in with the kubernetes
auth method (Vault calls TokenReview), tenant B with the jwt method (Vault checks the token offline). Each
tenant's role binds only its own ServiceAccount `app` and its policy reads only `secret/tenants/<ns>/*`.
The session's shared operator syncs them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import ValueFactory
from tests.e2e.identity_support import DocRunner, assert_no_leaks, create_from_doc
from tests.e2e.kube import (
    create_vaultsecret,
    events_for,
    get_secret,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.vault_audit import AuditLog
from tests.e2e.vault_setup_doc import yaml_block
from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

AUTH_FAILED = "AuthFailed"
PERMISSION_DENIED = "PermissionDenied"


@dataclass
class Tenants:
    a: str  # kubernetes auth method
    b: str  # jwt auth method
    a_value: str
    b_value: str
    a_vs: dict[str, Any]
    b_vs: dict[str, Any]

    def auth(self, tenant: str) -> dict[str, str]:
        """The `spec.auth` of the tenant's VaultSecret from the docs."""
        return dict((self.a_vs if tenant == self.a else self.b_vs)["spec"]["auth"])


@pytest.fixture(scope="module")
def tenants(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    vault_kubernetes_auth: str,
    vault_jwt_auth: str,
    operator: OperatorProcess,
    secret_values: set[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Tenants]:
    # The docs' commands use the default mounts; so do the stack's fixtures.
    assert (vault_kubernetes_auth, vault_jwt_auth) == ("kubernetes", "jwt")
    token = secrets.token_hex(3)
    a, b = f"t-{token}-a", f"t-{token}-b"
    run = DocRunner(stack, tmp_path_factory.mktemp("doc-home"))
    values = ValueFactory(secret_values)
    try:
        for tenant, role_block in ((a, "tenant-kubernetes-role"), (b, "tenant-jwt-role")):
            kube_admin.create_namespace(kube_api, tenant)
            kube_admin.wait_for_service_account(kube_api, tenant, "default")
            for name in ("tenant-serviceaccount", "tenant-policy", role_block):
                run(name, TENANT_NS=tenant)
        a_value, b_value = values("tenant-a"), values("tenant-b")
        vault_admin.kv_put(f"tenants/{a}/db", {"password": a_value})
        vault_admin.kv_put(f"tenants/{b}/db", {"password": b_value})
        a_vs = yaml_block("vaultsecret-kubernetes", {"team-a": a})
        b_vs = yaml_block("vaultsecret-jwt", {"team-b": b})
        create_from_doc(kube_api, a_vs)
        create_from_doc(kube_api, b_vs)
        yield Tenants(a, b, a_value, b_value, a_vs, b_vs)
    finally:
        kube_admin.delete_namespace(kube_api, a)
        kube_admin.delete_namespace(kube_api, b)


def test_both_auth_methods_sync_each_tenant_as_its_own_identity(
    kube_api: client.ApiClient, stack: LocalStack, tenants: Tenants
) -> None:
    assert tenants.auth(tenants.a).get("method") is None  # the docs' kubernetes example uses the default
    assert tenants.auth(tenants.b)["method"] == "jwt"
    for tenant, value in ((tenants.a, tenants.a_value), (tenants.b, tenants.b_value)):
        condition = wait_ready(kube_api, tenant, "db", timeout=60)
        assert condition["reason"] == "Synced"
        assert secret_data(kube_api, tenant, "db") == {"password": value.encode()}

    # Vault's own record: each tenant's path was read with a token of that tenant's ServiceAccount.
    audit = AuditLog(stack.vault_audit_log)
    reads_a = audit.requests(f"secret/data/tenants/{tenants.a}/db", kind="response", operation="read")
    reads_b = audit.requests(f"secret/data/tenants/{tenants.b}/db", kind="response", operation="read")
    assert reads_a
    assert reads_b
    assert {r["auth"]["display_name"] for r in reads_a} == {f"kubernetes-{tenants.a}-app"}
    assert {r["auth"]["display_name"] for r in reads_b} == {f"jwt-system:serviceaccount:{tenants.b}:app"}
    assert {tuple(r["auth"]["policies"]) for r in reads_a} == {("default", f"tenant-{tenants.a}")}
    assert {tuple(r["auth"]["policies"]) for r in reads_b} == {("default", f"tenant-{tenants.b}")}


@pytest.mark.parametrize("thief", ["a", "b"])
def test_a_tenant_naming_another_tenants_path_is_denied(
    kube_api: client.ApiClient, tenants: Tenants, thief: str
) -> None:
    own, other = (tenants.a, tenants.b) if thief == "a" else (tenants.b, tenants.a)
    other_value = tenants.b_value if thief == "a" else tenants.a_value
    wait_ready(kube_api, other, "db", timeout=60)
    victim = get_secret(kube_api, other, "db")
    assert victim is not None
    victim_version = victim.metadata.resource_version

    create_vaultsecret(
        kube_api,
        own,
        "steal",
        {"path": f"tenants/{other}/db", "auth": tenants.auth(own), "refreshInterval": "2s"},
    )
    condition = wait_ready(kube_api, own, "steal", status="False", reason=PERMISSION_DENIED, timeout=60)
    assert f"tenants/{other}/db" in condition["message"]
    assert other_value not in condition["message"]
    # Several retries later: still nothing, and the other tenant's Secret was never touched.
    wait_for(
        lambda: len([e for e in events_for(kube_api, own, "steal") if e.reason == PERMISSION_DENIED]) >= 1,
        timeout=30,
        what="the PermissionDenied Event",
    )
    assert get_secret(kube_api, own, "steal") is None
    victim_after = get_secret(kube_api, other, "db")
    assert victim_after is not None
    assert victim_after.metadata.resource_version == victim_version
    assert secret_data(kube_api, other, "db") == {"password": other_value.encode()}


def test_a_tenant_cannot_log_in_with_another_tenants_role(
    kube_api: client.ApiClient, tenants: Tenants
) -> None:
    """A's ServiceAccount presented to B's role (both methods): the role binds only B's ServiceAccount."""
    borrowed = {**tenants.auth(tenants.b)}  # jwt, role tenant-<b>
    create_vaultsecret(kube_api, tenants.a, "borrow", {"path": f"tenants/{tenants.b}/db", "auth": borrowed})
    condition = wait_ready(kube_api, tenants.a, "borrow", status="False", reason=AUTH_FAILED, timeout=60)
    assert f"role tenant-{tenants.b} does not bind ServiceAccount {tenants.a}/app" in condition["message"]
    assert tenants.b_value not in condition["message"]
    assert get_secret(kube_api, tenants.a, "borrow") is None

    borrowed = {**tenants.auth(tenants.a)}  # kubernetes, role tenant-<a>
    create_vaultsecret(kube_api, tenants.b, "borrow", {"path": f"tenants/{tenants.a}/db", "auth": borrowed})
    condition = wait_ready(kube_api, tenants.b, "borrow", status="False", reason=AUTH_FAILED, timeout=60)
    assert f"role tenant-{tenants.a} does not bind ServiceAccount {tenants.b}/app" in condition["message"]
    assert get_secret(kube_api, tenants.b, "borrow") is None


def test_the_default_identity_cannot_read_tenant_paths(kube_api: client.ApiClient, tenants: Tenants) -> None:
    """Without spec.auth the operator's own policy applies, and it does not cover the tenants' paths."""
    create_vaultsecret(kube_api, tenants.a, "no-auth", {"path": f"tenants/{tenants.b}/db"})
    condition = wait_ready(
        kube_api, tenants.a, "no-auth", status="False", reason=PERMISSION_DENIED, timeout=60
    )
    assert tenants.b_value not in condition["message"]
    assert get_secret(kube_api, tenants.a, "no-auth") is None


def test_service_account_without_a_vault_role_is_auth_failed(
    kube_api: client.ApiClient, tenants: Tenants
) -> None:
    kube_admin.create_service_account(kube_api, tenants.a, "nobody")
    # The tenant's role, which binds only `app`.
    auth = {**tenants.auth(tenants.a), "serviceAccountName": "nobody"}
    create_vaultsecret(kube_api, tenants.a, "nobody", {"path": f"tenants/{tenants.a}/db", "auth": auth})
    condition = wait_ready(kube_api, tenants.a, "nobody", status="False", reason=AUTH_FAILED, timeout=60)
    message = condition["message"]
    assert f"ServiceAccount {tenants.a}/nobody" in message
    assert f"role tenant-{tenants.a} does not bind" in message
    assert "spec.auth.role" in message
    assert get_secret(kube_api, tenants.a, "nobody") is None

    # No role given: the operator's default role, which binds only the operator's own ServiceAccount (and
    # requires the audience vault: with another, Vault would refuse the token before looking at the binding).
    create_vaultsecret(
        kube_api,
        tenants.a,
        "nobody-default-role",
        {"path": f"tenants/{tenants.a}/db", "auth": {"serviceAccountName": "nobody", "audience": "vault"}},
    )
    condition = wait_ready(
        kube_api, tenants.a, "nobody-default-role", status="False", reason=AUTH_FAILED, timeout=60
    )
    assert "role vaultsync does not bind" in condition["message"]
    assert f"ServiceAccount {tenants.a}/nobody" in condition["message"]


def test_service_account_that_does_not_exist_is_auth_failed(
    kube_api: client.ApiClient, tenants: Tenants
) -> None:
    auth = {**tenants.auth(tenants.a), "serviceAccountName": "ghost"}
    create_vaultsecret(kube_api, tenants.a, "ghost", {"path": f"tenants/{tenants.a}/db", "auth": auth})
    condition = wait_ready(kube_api, tenants.a, "ghost", status="False", reason=AUTH_FAILED, timeout=60)
    assert f"ServiceAccount {tenants.a}/ghost does not exist" in condition["message"]
    assert "spec.auth.serviceAccountName" in condition["message"]
    assert get_secret(kube_api, tenants.a, "ghost") is None


def test_wrong_auth_mount_is_auth_failed(kube_api: client.ApiClient, tenants: Tenants) -> None:
    auth = {**tenants.auth(tenants.a), "mount": "no-such-mount"}
    create_vaultsecret(kube_api, tenants.a, "bad-mount", {"path": f"tenants/{tenants.a}/db", "auth": auth})
    condition = wait_ready(kube_api, tenants.a, "bad-mount", status="False", reason=AUTH_FAILED, timeout=60)
    assert "auth/no-such-mount" in condition["message"]
    assert "spec.auth.mount" in condition["message"]
    assert get_secret(kube_api, tenants.a, "bad-mount") is None


def test_role_that_does_not_exist_is_auth_failed(kube_api: client.ApiClient, tenants: Tenants) -> None:
    for tenant in (tenants.a, tenants.b):
        auth = {**tenants.auth(tenant), "role": "no-such-role"}
        create_vaultsecret(kube_api, tenant, "bad-role", {"path": f"tenants/{tenant}/db", "auth": auth})
        condition = wait_ready(kube_api, tenant, "bad-role", status="False", reason=AUTH_FAILED, timeout=60)
        assert "role no-such-role does not exist" in condition["message"]
        assert "spec.auth.role" in condition["message"]


def test_jwt_token_for_the_wrong_audience_is_auth_failed(
    kube_api: client.ApiClient, tenants: Tenants
) -> None:
    auth = {**tenants.auth(tenants.b), "audience": "not-vault"}
    create_vaultsecret(kube_api, tenants.b, "bad-audience", {"path": f"tenants/{tenants.b}/db", "auth": auth})
    condition = wait_ready(
        kube_api, tenants.b, "bad-audience", status="False", reason=AUTH_FAILED, timeout=60
    )
    assert "audience" in condition["message"]
    assert "spec.auth.audience" in condition["message"]
    assert get_secret(kube_api, tenants.b, "bad-audience") is None


def test_no_token_jwt_or_secret_value_in_status_events_or_the_operator_log(
    kube_api: client.ApiClient, tenants: Tenants, operator: OperatorProcess, secret_values: set[str]
) -> None:
    """Runs last in this module: everything the tenancy tests made the operator say."""
    for tenant in (tenants.a, tenants.b):
        for event in client.CoreV1Api(kube_api).list_namespaced_event(tenant).items:
            assert_no_leaks(event.message or "", secret_values, f"Event {event.metadata.name}")
        for obj in client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
            "vaultsync.io", "v1alpha1", tenant, "vaultsecrets"
        )["items"]:
            assert_no_leaks(str(obj.get("status")), secret_values, f"status of {obj['metadata']['name']}")
    log = operator.log_text()
    assert tenants.a in log  # the log covers this module's work
    assert_no_leaks(log, secret_values)
