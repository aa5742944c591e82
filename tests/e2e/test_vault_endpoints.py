"""Which Vault endpoints a VaultSecret can reach (issue 10, finding 1), on the real API server and OpenBao.

What the CRD schema can express (dot segments, '%', '\\', '?', '#', control characters, Vault's own mounts,
control characters in header fields) is refused by `kubectl apply` with 422. What only Vault knows (a KV v1
spec on a KV v2 mount, a mount that is not KV, a "mount" that is a path inside a mount) is refused by the
operator's mount check: Ready=False InvalidSpec naming the field, no Secret, and OpenBao's audit log shows
that nothing but the mount lookups and KV data reads were requested with the tenant's token.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import hvac
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.conftest import ValueFactory
from tests.e2e.kube import create_vaultsecret, get_secret, secret_data, wait_ready
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.vault_audit import AuditLog
from vaultsync.core.errors import SyncError
from vaultsync.core.spec import SourceSpec
from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin
from vaultsync.vault.client import VaultClient, VaultToken
from vaultsync.vault.mounts import MountChecker

INVALID_SPEC = "InvalidSpec"
TRANSIT = "transit-ep"

# (spec, the field the API server names; Kubernetes 1.20 names list items without their index)
SCHEMA_REFUSES: list[tuple[dict[str, Any], str]] = [
    ({"mount": "auth/token", "kv": "v1", "path": "lookup-self", "keys": ["id"]}, "spec.mount"),
    ({"kv": "v1", "path": "%2e%2e/auth/token/lookup-self"}, "spec.path"),
    ({"path": "x/%2e%2e/%2e%2e/%2e%2e/auth/token/lookup-self"}, "spec.path"),
    ({"path": "x/../../auth/token/lookup-self"}, "spec.path"),
    ({"path": "a", "mount": "sys"}, "spec.mount"),
    ({"path": "a", "mount": "SYS/mounts"}, "spec.mount"),
    ({"path": "a", "mount": "Auth/Token"}, "spec.mount"),
    ({"path": "a", "mount": "identity"}, "spec.mount"),
    ({"path": "a", "mount": "cubbyhole"}, "spec.mount"),
    ({"path": "a", "mount": "secret%2f..%2fsys"}, "spec.mount"),
    ({"sources": [{"path": "lookup-self", "mount": "auth/token", "kv": "v1"}]}, "spec.sources.mount"),
    ({"sources": [{"path": "%2e%2e/x"}]}, "spec.sources.path"),
    ({"path": "x\\..\\..\\auth"}, "spec.path"),
    ({"path": "lookup-self?x=1"}, "spec.path"),
    ({"path": "a#b"}, "spec.path"),
    ({"path": "a\nb"}, "spec.path"),
    ({"path": "a\x00b"}, "spec.path"),
    ({"path": "a", "auth": {"mount": "kubernetes/%2e%2e"}}, "spec.auth.mount"),
    ({"path": "a", "auth": {"role": "r\r\nX-Vault-Token: s.x"}}, "spec.auth.role"),
    ({"path": "a", "auth": {"audience": "vault\x00"}}, "spec.auth.audience"),
    ({"path": "a", "auth": {"vaultNamespace": "team\ta"}}, "spec.auth.vaultNamespace"),
]


@pytest.mark.parametrize(("spec", "field"), SCHEMA_REFUSES)
def test_the_api_server_refuses_what_the_schema_can_express(
    kube_api: client.ApiClient, namespace: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as info:
        create_vaultsecret(kube_api, namespace, "hostile", spec)
    assert info.value.status == 422
    assert field in str(info.value.body)


def test_ordinary_unusual_paths_are_accepted_by_the_api_server(
    kube_api: client.ApiClient, namespace: str
) -> None:
    """The patterns refuse the hostile characters only: spaces, unicode, '+', ';', '..b' stay valid."""
    spec = {"path": "a b/ä€/x+y;z/..b/...", "mount": "team/kv", "refreshInterval": "0"}
    assert create_vaultsecret(kube_api, namespace, "unusual", spec)["spec"]["path"] == spec["path"]


@pytest.fixture
def tenant(
    namespace: str,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    vault_kubernetes_auth: str,
    operator: OperatorProcess,
) -> dict[str, Any]:
    """The namespace's ServiceAccount `app` with a Vault role whose policy reads its own KV paths and
    grants read on a transit mount (so that Vault shows the mount to it: the check must refuse it by type,
    not by invisibility). Returns the `spec.auth` to use."""
    assert vault_kubernetes_auth == "kubernetes"
    if f"{TRANSIT}/" not in vault_admin.client.sys.list_mounted_secrets_engines()["data"]:
        vault_admin.client.sys.enable_secrets_engine("transit", path=TRANSIT)
    kube_admin.create_service_account(kube_api, namespace, "app")
    role = f"ep-{namespace}"
    vault_admin.write_policy(
        role,
        f'path "secret/data/ep/{namespace}/*" {{ capabilities = ["read"] }}\n'
        f'path "kv1/ep/{namespace}/*" {{ capabilities = ["read"] }}\n'
        f'path "{TRANSIT}/*" {{ capabilities = ["read"] }}\n',
    )
    vault_admin.kubernetes_role(role, ["app"], [namespace], [role], audience="vault")
    return {"serviceAccountName": "app", "role": role, "audience": "vault"}


def test_mounts_that_are_not_the_stated_kv_engine_are_invalid_spec_and_never_read(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    namespace: str,
    tenant: dict[str, Any],
    new_value: ValueFactory,
) -> None:
    audit = AuditLog(stack.vault_audit_log)
    since = audit.mark()
    value = new_value()
    vault_admin.kv_put(f"ep/{namespace}/db", {"password": value})
    db = f"ep/{namespace}/db"

    # The identity works: an ordinary VaultSecret of it syncs (the mount lookup with its token succeeds).
    create_vaultsecret(kube_api, namespace, "ok", {"path": db, "auth": tenant})
    wait_ready(kube_api, namespace, "ok", timeout=60)
    assert secret_data(kube_api, namespace, "ok") == {"password": value.encode()}

    hostile: dict[str, tuple[dict[str, Any], list[str]]] = {
        # kv v1 on the kv v2 mount: would read secret/ep/... (v1 semantics) on the old code
        "v1-on-v2": ({"path": db, "kv": "v1"}, ["spec.kv is v1", "KV v2 engine", "set spec.kv: v2"]),
        "v2-on-v1": ({"path": db, "mount": "kv1"}, ["spec.kv is v2", "KV v1 engine", "set spec.kv: v1"]),
        "transit": (
            {"path": "keys/k", "mount": TRANSIT, "kv": "v1"},
            [f"spec.mount '{TRANSIT}' is a transit mount, not a KV secrets engine"],
        ),
        "inside": (
            {"path": db, "mount": "secret/data", "kv": "v1"},
            ["spec.mount 'secret/data' is not a mount but a path inside the mount 'secret'"],
        ),
        "inside-source": (
            {"sources": [{"path": db}, {"path": db, "mount": "secret/metadata", "kv": "v1"}]},
            ["spec.sources[1].mount 'secret/metadata'", "inside the mount 'secret'"],
        ),
    }
    for name, (spec, _) in hostile.items():
        create_vaultsecret(kube_api, namespace, name, {**spec, "auth": tenant})
    for name, (_, fragments) in hostile.items():
        condition = wait_ready(kube_api, namespace, name, status="False", reason=INVALID_SPEC, timeout=60)
        for fragment in fragments:
            assert fragment in condition["message"], (name, condition["message"])
        assert value not in condition["message"]
        assert get_secret(kube_api, namespace, name) is None

    # OpenBao's own record of every request made with the tenant's token.
    display_name = f"kubernetes-{namespace}-app"
    requests = [
        e["request"]
        for e in audit.entries(since)
        if (e.get("auth") or {}).get("display_name") == display_name
    ]
    paths = [str(r.get("path")) for r in requests]
    lookups = {p for p in paths if p.startswith("sys/internal/ui/mounts/")}
    others = [p for p in paths if p not in lookups]
    # No lookup-self, neither as a read nor as the reader's token check (that one follows a 403 only, and
    # no request here was denied).
    assert "auth/token/lookup-self" not in paths
    assert set(others) <= {f"secret/data/{db}"}, others
    assert {r.get("operation") for r in requests} == {"read"}
    # Refusals are not cached: each refused mount was looked up with the tenant's own token.
    assert {
        f"sys/internal/ui/mounts/{m}" for m in ("kv1", TRANSIT, "secret/data", "secret/metadata")
    } <= lookups
    assert lookups <= {
        f"sys/internal/ui/mounts/{m}" for m in ("secret", "kv1", TRANSIT, "secret/data", "secret/metadata")
    }


def test_the_mount_check_inside_an_openbao_namespace(stack: LocalStack, vault_admin: VaultAdmin) -> None:
    """OpenBao answers sys/internal/ui/mounts/<mount> in a namespace with the mount's path relative to the
    namespace: the check accepts the namespace's own KV mount and refuses a path inside it."""
    vault_namespace = f"ep-{secrets.token_hex(3)}"
    vault_admin.client.adapter.post(f"/v1/sys/namespaces/{vault_namespace}")
    inside = hvac.Client(url=stack.vault_addr, token=stack.vault_root_token, namespace=vault_namespace)
    inside.sys.enable_secrets_engine("kv", path="teamkv", options={"version": "2"})
    root = VaultToken(
        client_token=stack.vault_root_token, accessor="", lease_duration=0, renewable=False, obtained_at=0
    )

    async def check(mount: str, kv: str, namespace: str | None) -> str:
        client = VaultClient(stack.vault_addr)
        try:
            source = SourceSpec(mount=mount, path="p", kv=kv, version=None)  # type: ignore[arg-type]
            await MountChecker(client).check(root, source, namespace=namespace)
            return "ok"
        except SyncError as exc:
            return f"{exc.reason}: {exc.message}"
        finally:
            await client.close()

    assert asyncio.run(check("teamkv", "v2", vault_namespace)) == "ok"
    assert asyncio.run(check("teamkv", "v1", vault_namespace)).startswith(f"{INVALID_SPEC}: spec.kv is v1")
    inside_a_mount = asyncio.run(check("teamkv/data", "v1", vault_namespace))
    assert "is not a mount but a path inside the mount 'teamkv'" in inside_a_mount
    # The namespace's mount is not the root namespace's.
    assert asyncio.run(check("teamkv", "v2", None)).startswith("PermissionDenied")
