"""The local stack itself: a real API server, a working controller-manager, OpenBao logins with
service-account tokens through both auth methods, audit logs, and the outage switches."""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Callable

import hvac
import pytest
import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

pytestmark = pytest.mark.e2e


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)


def vault_client(stack: LocalStack, timeout: float = 30) -> hvac.Client:
    verify = str(stack.vault_ca_cert) if stack.vault_ca_cert else True
    return hvac.Client(url=stack.vault_addr, verify=verify, timeout=timeout)


def reader_policy(vault_admin: VaultAdmin, namespace: str) -> str:
    """A policy reading secret/<namespace>/* and a secret there; returns the policy name."""
    vault_admin.write_policy(namespace, f'path "secret/data/{namespace}/*" {{ capabilities = ["read"] }}\n')
    vault_admin.kv_put(f"{namespace}/app", {"user": "devstack"})
    return namespace


def test_apiserver_answers_readyz_with_the_admin_token(stack: LocalStack, kube_api: client.ApiClient) -> None:
    request = urllib.request.Request(  # noqa: S310 - https to the stack's own API server
        f"{stack.api_url}/readyz", headers={"Authorization": f"Bearer {stack.admin_token}"}
    )
    context = ssl.create_default_context(cafile=str(stack.ca_cert))
    with urllib.request.urlopen(request, context=context, timeout=5) as response:  # noqa: S310
        assert response.status == 200
    assert client.VersionApi(kube_api).get_code().git_version.startswith("v1.20")
    assert stack.api_url.startswith("https://127.0.0.1:")
    assert stack.vault_addr.split("//")[1].startswith("127.0.0.1:")


def test_controller_manager_creates_default_service_account(
    kube_api: client.ApiClient, namespace: str
) -> None:
    kube_admin.wait_for_service_account(kube_api, namespace, "default", timeout=30)
    core = client.CoreV1Api(kube_api)
    wait_for(
        lambda: bool(
            core.list_namespaced_config_map(namespace, field_selector="metadata.name=kube-root-ca.crt").items
        ),
        what="the root-ca-cert-publisher's ConfigMap",
    )


def test_kubernetes_auth_login_with_a_token_request_token(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    vault_kubernetes_auth: str,
    namespace: str,
) -> None:
    kube_admin.create_service_account(kube_api, namespace, "app")
    policy = reader_policy(vault_admin, namespace)
    vault_admin.kubernetes_role(
        f"k8s-{namespace}", ["app"], [namespace], [policy], mount=vault_kubernetes_auth
    )

    jwt = kube_admin.request_token(kube_api, namespace, "app", expiration_seconds=600)
    vault = vault_client(stack)
    vault.auth.kubernetes.login(f"k8s-{namespace}", jwt, mount_point=vault_kubernetes_auth)

    secret = vault.secrets.kv.v2.read_secret_version(path=f"{namespace}/app", raise_on_deleted_version=True)
    assert secret["data"]["data"] == {"user": "devstack"}
    assert _audit_paths(stack, f"auth/{vault_kubernetes_auth}/login")


def test_kubernetes_auth_role_bound_to_the_vault_audience(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    vault_kubernetes_auth: str,
    namespace: str,
) -> None:
    kube_admin.create_service_account(kube_api, namespace, "app")
    role = f"k8s-aud-{namespace}"
    vault_admin.kubernetes_role(
        role, ["app"], [namespace], ["default"], audience="vault", mount=vault_kubernetes_auth
    )

    jwt = kube_admin.request_token(kube_api, namespace, "app", ["vault"], expiration_seconds=600)
    vault_client(stack).auth.kubernetes.login(role, jwt, mount_point=vault_kubernetes_auth)
    issuer_only = kube_admin.request_token(kube_api, namespace, "app", [stack.issuer], expiration_seconds=600)
    with pytest.raises(hvac.exceptions.Forbidden):
        vault_client(stack).auth.kubernetes.login(role, issuer_only, mount_point=vault_kubernetes_auth)


def test_kubernetes_auth_rejects_another_service_account(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    vault_kubernetes_auth: str,
    namespace: str,
) -> None:
    kube_admin.create_service_account(kube_api, namespace, "intruder")
    vault_admin.kubernetes_role(
        f"k8s-{namespace}", ["app"], [namespace], ["default"], mount=vault_kubernetes_auth
    )
    jwt = kube_admin.request_token(kube_api, namespace, "intruder", expiration_seconds=600)
    with pytest.raises(hvac.exceptions.Forbidden):
        vault_client(stack).auth.kubernetes.login(f"k8s-{namespace}", jwt, mount_point=vault_kubernetes_auth)


def test_jwt_auth_login_with_a_vault_audience_token(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    vault_jwt_auth: str,
    namespace: str,
) -> None:
    kube_admin.create_service_account(kube_api, namespace, "app")
    policy = reader_policy(vault_admin, namespace)
    role = f"jwt-{namespace}"
    vault_admin.jwt_role(
        role, ["app"], [namespace], audiences=["vault"], policies=[policy], mount=vault_jwt_auth
    )

    jwt = kube_admin.request_token(kube_api, namespace, "app", audiences=["vault"], expiration_seconds=600)
    vault = vault_client(stack)
    vault.auth.jwt.jwt_login(role, jwt, path=vault_jwt_auth)
    secret = vault.secrets.kv.v2.read_secret_version(path=f"{namespace}/app", raise_on_deleted_version=True)
    assert secret["data"]["data"] == {"user": "devstack"}

    # (A token for the API server's own audience is not one for Vault.)
    wrong_audience = kube_admin.request_token(
        kube_api, namespace, "app", [stack.issuer], expiration_seconds=600
    )
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault_client(stack).auth.jwt.jwt_login(role, wrong_audience, path=vault_jwt_auth)


def test_garbage_collector_deletes_objects_whose_owner_is_gone(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    dependent = client.V1Secret(metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference]))
    core.create_namespaced_secret(namespace, dependent)

    core.delete_namespaced_config_map("owner", namespace)

    def dependent_gone() -> bool:
        try:
            core.read_namespaced_secret("dependent", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(dependent_gone, timeout=30, what="the garbage collector")


def test_kube_audit_log_records_secret_writes_only(
    stack: LocalStack, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="noise"))
    )
    core.create_namespaced_secret(namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="audited")))
    core.read_namespaced_secret("audited", namespace)
    core.delete_namespaced_secret("audited", namespace)

    def events() -> list[tuple[str, str]]:
        if not stack.kube_audit_log.exists():
            return []
        lines = stack.kube_audit_log.read_text().splitlines()
        entries = [json.loads(line) for line in lines]
        return [
            (e["verb"], e["objectRef"]["resource"])
            for e in entries
            if e["objectRef"].get("namespace") == namespace
        ]

    wait_for(lambda: len(events()) >= 2, timeout=10, what="audit events")
    assert events() == [("create", "secrets"), ("delete", "secrets")]


def test_seal_and_pause_keep_vault_data(stack: LocalStack, vault_admin: VaultAdmin, namespace: str) -> None:
    vault_admin.kv_put(f"{namespace}/kept", {"k": "v"})
    stack.seal_vault()
    assert stack.vault_sealed()
    with pytest.raises(hvac.exceptions.VaultDown):
        vault_admin.kv_get(f"{namespace}/kept")
    stack.unseal_vault()
    assert not stack.vault_sealed()
    assert vault_admin.kv_get(f"{namespace}/kept") == {"k": "v"}

    stack.pause_vault()
    try:
        with pytest.raises(requests.exceptions.Timeout):
            vault_client(stack, timeout=1).sys.read_health_status(method="GET")
    finally:
        stack.resume_vault()
    assert vault_admin.kv_get(f"{namespace}/kept") == {"k": "v"}


def _audit_paths(stack: LocalStack, path: str) -> list[str]:
    lines = stack.vault_audit_log.read_text().splitlines()
    requests = [json.loads(line).get("request", {}) for line in lines]
    return [r["path"] for r in requests if r.get("path") == path]
