"""Vault token lifecycle, counted from OpenBao's audit log, with operators of the tests' own.

Each test logs in at an auth mount of its own (kubernetes method, configured like the stack's), so that the
requests at `auth/<mount>/login` in the audit log are exactly this test's operator's logins, and the tokens'
display names (`<mount>-<namespace>-<serviceaccount>`) single out its renewals and revocations.
"""

from __future__ import annotations

import secrets
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import E2E_POLICY, ValueFactory, operator_env
from tests.e2e.identity_support import assert_no_leaks, delete_namespaces, own_namespaces, running_operator
from tests.e2e.kube import (
    GROUP,
    PLURAL,
    VERSION,
    create_vaultsecret,
    events_for,
    ready,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.e2e.vault_audit import AuditLog, audit_hash
from vaultsync.devstack import kube_admin
from vaultsync.devstack.demo import OPERATOR_NAMESPACE, configure_kubernetes_auth
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

MANY = 100


@pytest.fixture
def auth_mount(stack: LocalStack, kube_api: client.ApiClient, vault_admin: VaultAdmin) -> str:
    """A kubernetes auth mount of this test's own (TokenReview against the stack's API server)."""
    mount = f"k8s-{secrets.token_hex(3)}"
    configure_kubernetes_auth(stack, kube_api, vault_admin, mount=mount)
    return mount


@pytest.fixture
def own_namespace(kube_api: client.ApiClient) -> Iterator[tuple[str, str]]:
    """(watch glob, namespace) for an operator of the test's own, with a ServiceAccount `app`."""
    glob, (namespace,) = own_namespaces(kube_api, "ns")
    kube_admin.create_service_account(kube_api, namespace, "app")
    yield glob, namespace
    delete_namespaces(kube_api, [namespace])


def _role(vault_admin: VaultAdmin, mount: str, name: str, namespace: str, sa: str, **ttl: int) -> None:
    """A role bound to one ServiceAccount, reading the e2e paths (`secret/data/e2e/*`)."""
    body = {
        "bound_service_account_names": [sa],
        "bound_service_account_namespaces": [namespace],
        "token_policies": [E2E_POLICY],
        **ttl,
    }
    vault_admin.client.adapter.post(f"/v1/auth/{mount}/role/{name}", json=body)


def _of_mount(entries: list[dict[str, Any]], mount: str) -> list[dict[str, Any]]:
    """Entries made with a token obtained at this mount (its display name starts with the mount)."""
    return [e for e in entries if str(e.get("auth", {}).get("display_name", "")).startswith(f"{mount}-")]


def _ready_conditions(kube_api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    """name -> Ready condition of every VaultSecret of the namespace that has one."""
    items = client.CustomObjectsApi(kube_api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return {
        item["metadata"]["name"]: c
        for item in items["items"]
        for c in (item.get("status") or {}).get("conditions") or []
        if c.get("type") == "Ready"
    }


def _ready_count(kube_api: client.ApiClient, namespace: str) -> int:
    return sum(1 for c in _ready_conditions(kube_api, namespace).values() if c.get("status") == "True")


def _token_requests(stack: LocalStack) -> float:
    """The API server's count of TokenRequests (apiserver_request_total for serviceaccounts/token)."""
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    request = urllib.request.Request(f"{stack.api_url}/metrics", headers=headers)  # noqa: S310 - https
    tls = ssl.create_default_context(cafile=str(stack.ca_cert))
    with urllib.request.urlopen(request, context=tls, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    total = 0.0
    wanted = ('resource="serviceaccounts"', 'subresource="token"', 'verb="POST"')
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and all(label in line for label in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_secret_value(
    kube_api: client.ApiClient, namespace: str, name: str, value: str, timeout: float
) -> None:
    wait_for(
        lambda: secret_data(kube_api, namespace, name) == {"value": value.encode()},
        timeout=timeout,
        what=f"the Secret {name} to follow Vault",
    )


def test_hundred_vaultsecrets_sharing_one_identity_log_in_once(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    auth_mount: str,
    own_namespace: tuple[str, str],
    new_value: ValueFactory,
    secret_values: set[str],
    tmp_path: Path,
) -> None:
    glob, namespace = own_namespace
    _role(vault_admin, auth_mount, "many", namespace, "app", token_ttl=3600)
    values = [new_value() for _ in range(MANY)]
    for i, value in enumerate(values):
        vault_admin.kv_put(f"e2e/{namespace}/s{i}", {"value": value})
    audit = AuditLog(stack.vault_audit_log)
    mark = audit.mark()
    token_requests_before = _token_requests(stack)
    auth = {"serviceAccountName": "app", "mount": auth_mount, "role": "many"}
    with running_operator(
        operator_env(stack, operator_token_file, watch=glob), tmp_path / "op.log"
    ) as operator:
        for i in range(MANY):
            create_vaultsecret(kube_api, namespace, f"s{i}", {"path": f"e2e/{namespace}/s{i}", "auth": auth})
        wait_for(
            lambda: _ready_count(kube_api, namespace) == MANY, timeout=180, what=f"{MANY} VaultSecrets Ready"
        )
        for i in (0, MANY // 2, MANY - 1):
            assert secret_data(kube_api, namespace, f"s{i}") == {"value": values[i].encode()}
        logins = audit.count(f"auth/{auth_mount}/login", since=mark)
        used = len(_of_mount(list(audit.entries(mark)), auth_mount))
        token_requests = _token_requests(stack) - token_requests_before
        print(
            f"\n{MANY} VaultSecrets: {logins} login(s), {token_requests:g} TokenRequest(s), {used} requests"
        )
        assert logins == 1
        assert token_requests == 1
    # At shutdown the operator revoked the token it held.
    revocations = _of_mount(audit.requests("auth/token/revoke-self", since=mark), auth_mount)
    assert len(revocations) == 1
    assert_no_leaks(operator.log_text(), secret_values)


def test_short_token_ttl_syncs_keep_working_across_expiries(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    auth_mount: str,
    own_namespace: tuple[str, str],
    new_value: ValueFactory,
    secret_values: set[str],
    tmp_path: Path,
) -> None:
    glob, namespace = own_namespace
    _role(vault_admin, auth_mount, "short", namespace, "app", token_ttl=10, token_max_ttl=20)
    path = f"e2e/{namespace}/rotating"
    value = new_value()
    vault_admin.kv_put(path, {"value": value})
    audit = AuditLog(stack.vault_audit_log)
    mark = audit.mark()
    auth = {"serviceAccountName": "app", "mount": auth_mount, "role": "short"}
    with running_operator(
        operator_env(stack, operator_token_file, watch=glob), tmp_path / "op.log"
    ) as operator:
        create_vaultsecret(
            kube_api, namespace, "rotating", {"path": path, "auth": auth, "refreshInterval": "3s"}
        )
        first_ready = wait_ready(kube_api, namespace, "rotating", timeout=60)
        started = time.monotonic()
        changes = 0
        while time.monotonic() - started < 50:
            value = new_value()
            vault_admin.kv_put(path, {"value": value})
            _wait_secret_value(kube_api, namespace, "rotating", value, timeout=20)
            changes += 1
            time.sleep(2)
        # Never a failed sync in between: Ready stayed True since the first sync, and no Warning Event.
        condition = ready(kube_api, namespace, "rotating")
        assert condition is not None
        assert condition["status"] == "True"
        assert condition["lastTransitionTime"] == first_ready["lastTransitionTime"]
        warnings = [e.reason for e in events_for(kube_api, namespace, "rotating") if e.type == "Warning"]
        assert warnings == []
    logins = audit.count(f"auth/{auth_mount}/login", since=mark)
    renewals = len(_of_mount(audit.requests("auth/token/renew-self", since=mark), auth_mount))
    print(
        f"\n10 s TTL, {time.monotonic() - started:.0f} s, {changes} changes:",
        f"{logins} logins, {renewals} renewals",
    )
    # The token lives at most 20 s (renewed at 2/3 of its TTL until the max TTL caps it): a re-login at
    # least every ~20 s.
    assert logins >= 3
    assert renewals >= 2
    assert_no_leaks(operator.log_text(), secret_values)


def test_unused_token_is_revoked(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    auth_mount: str,
    own_namespace: tuple[str, str],
    new_value: ValueFactory,
    tmp_path: Path,
) -> None:
    """A token that no sync used for a whole token lifetime is revoked, not renewed for ever."""
    glob, namespace = own_namespace
    _role(vault_admin, auth_mount, "idle", namespace, "app", token_ttl=10, token_max_ttl=3600)
    vault_admin.kv_put(f"e2e/{namespace}/once", {"value": new_value()})
    audit = AuditLog(stack.vault_audit_log)
    mark = audit.mark()
    auth = {"serviceAccountName": "app", "mount": auth_mount, "role": "idle"}
    with running_operator(operator_env(stack, operator_token_file, watch=glob), tmp_path / "op.log"):
        create_vaultsecret(
            kube_api,
            namespace,
            "once",
            {"path": f"e2e/{namespace}/once", "auth": auth, "refreshInterval": "0"},
        )
        wait_ready(kube_api, namespace, "once", timeout=60)
        revoked = wait_for(
            lambda: _of_mount(audit.requests("auth/token/revoke-self", since=mark), auth_mount),
            timeout=40,
            what="the unused token's revocation",
        )
        renewals = _of_mount(audit.requests("auth/token/renew-self", since=mark), auth_mount)
        assert len(revoked) == 1
        assert len(renewals) <= 1  # at most the renewal at 2/3 of the TTL, while it was recently used
        assert audit.count(f"auth/{auth_mount}/login", since=mark) == 1


def test_service_account_recreated_gets_a_fresh_token(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    auth_mount: str,
    own_namespace: tuple[str, str],
    new_value: ValueFactory,
    tmp_path: Path,
) -> None:
    """When the cached TokenRequest token is refused (its ServiceAccount was deleted and re-created), the next
    attempt requests a new one instead of failing until the cached one expires."""
    glob, namespace = own_namespace
    _role(vault_admin, auth_mount, "lapse", namespace, "app", token_ttl=10, token_max_ttl=10)
    path = f"e2e/{namespace}/lapse"
    vault_admin.kv_put(path, {"value": new_value()})
    auth = {"serviceAccountName": "app", "mount": auth_mount, "role": "lapse"}
    with running_operator(operator_env(stack, operator_token_file, watch=glob), tmp_path / "op.log"):
        create_vaultsecret(
            kube_api, namespace, "lapse", {"path": path, "auth": auth, "refreshInterval": "2s"}
        )
        wait_ready(kube_api, namespace, "lapse", timeout=60)
        core = client.CoreV1Api(kube_api)
        core.delete_namespaced_service_account("app", namespace)
        kube_admin.create_service_account(kube_api, namespace, "app")
        value = new_value()
        vault_admin.kv_put(path, {"value": value})
        # The Vault token lapses within 10 s; the re-login with the old JWT is refused, the next asks anew.
        wait_for(
            lambda: secret_data(kube_api, namespace, "lapse") == {"value": value.encode()},
            timeout=60,
            what="the Secret to follow Vault after the ServiceAccount was re-created",
        )
        wait_ready(kube_api, namespace, "lapse", timeout=30)


def test_operator_token_file_is_read_again_when_it_changes(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    auth_mount: str,
    own_namespace: tuple[str, str],
    new_value: ValueFactory,
    secret_values: set[str],
    tmp_path: Path,
) -> None:
    """The operator's own JWT file is replaced (as the kubelet rotates projected tokens) and the old JWT stops
    working: the next login uses the new file's JWT."""
    glob, namespace = own_namespace
    operator_sa = f"vaultsync-rotate-{secrets.token_hex(3)}"
    kube_admin.create_service_account(kube_api, OPERATOR_NAMESPACE, operator_sa)
    _role(vault_admin, auth_mount, "own", OPERATOR_NAMESPACE, operator_sa, token_ttl=3600)
    token_file = tmp_path / "token"
    old_jwt = kube_admin.request_token(kube_api, OPERATOR_NAMESPACE, operator_sa)
    token_file.write_text(old_jwt)
    path = f"e2e/{namespace}/cfg"
    vault_admin.kv_put(path, {"value": new_value()})
    env = {
        **operator_env(stack, token_file, watch=glob),
        "VAULTSYNC_AUTH_MOUNT": auth_mount,
        "VAULTSYNC_AUTH_ROLE": "own",
    }
    audit = AuditLog(stack.vault_audit_log)
    mark = audit.mark()
    try:
        with running_operator(env, tmp_path / "op.log") as operator:
            create_vaultsecret(kube_api, namespace, "cfg", {"path": path, "refreshInterval": "2s"})
            wait_ready(kube_api, namespace, "cfg", timeout=60)

            # The old JWT becomes worthless: its ServiceAccount is re-created (new uid).
            client.CoreV1Api(kube_api).delete_namespaced_service_account(operator_sa, OPERATOR_NAMESPACE)
            kube_admin.create_service_account(kube_api, OPERATOR_NAMESPACE, operator_sa)
            new_jwt = kube_admin.request_token(kube_api, OPERATOR_NAMESPACE, operator_sa)
            assert new_jwt != old_jwt
            replacement = tmp_path / "token.new"
            replacement.write_text(new_jwt)
            replacement.replace(token_file)
            # ...and the Vault token it gave is revoked: the next read gets 403 and must log in again.
            vault_admin.client.sys.revoke_prefix(f"auth/{auth_mount}/")
            value = new_value()
            vault_admin.kv_put(path, {"value": value})
            wait_for(
                lambda: secret_data(kube_api, namespace, "cfg") == {"value": value.encode()},
                timeout=60,
                what="the Secret to follow Vault after the token file changed",
            )
            logins = audit.requests(f"auth/{auth_mount}/login", since=mark)
            assert [entry["request"]["data"]["jwt"] for entry in logins] == [
                audit_hash(vault_admin, old_jwt),
                audit_hash(vault_admin, new_jwt),
            ]
        assert_no_leaks(operator.log_text(), secret_values | {old_jwt, new_jwt})
    finally:
        client.CoreV1Api(kube_api).delete_namespaced_service_account(operator_sa, OPERATOR_NAMESPACE)


REFUSED = 40
LOGIN_BACKOFF_BASE, LOGIN_BACKOFF_MAX = 1.0, 8.0
FLOOD_WINDOW = 20.0
# Attempt k (0-based) comes at the earliest after the shortest jittered delays 0.8, 1.6, 3.2, then 6.4 at the
# cap (0.8 x 8 s): at 0, 0.8, 2.4, 5.6, 12.0, 18.4, 24.8 s. So at most 6 attempts fit in the 20 s window,
# whatever the number of VaultSecrets.
MAX_ATTEMPTS_IN_WINDOW = 6


def test_forty_vaultsecrets_on_a_refused_identity_share_one_login_backoff(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    auth_mount: str,
    own_namespace: tuple[str, str],
    new_value: ValueFactory,
    secret_values: set[str],
    tmp_path: Path,
) -> None:
    """40 VaultSecrets on one identity whose Vault role does not exist: the refusal is shared, so Vault sees a
    handful of logins (and the API server as many TokenRequests), not 40 per retry; once the role exists, all
    40 sync within the login backoff's cap plus one retry delay."""
    glob, namespace = own_namespace
    values = [new_value() for _ in range(REFUSED)]
    for i, value in enumerate(values):
        vault_admin.kv_put(f"e2e/{namespace}/r{i}", {"value": value})
    auth = {"serviceAccountName": "app", "mount": auth_mount, "role": "later"}
    env = {
        **operator_env(stack, operator_token_file, watch=glob),
        "VAULTSYNC_LOGIN_BACKOFF_BASE": f"{LOGIN_BACKOFF_BASE:g}s",
        "VAULTSYNC_LOGIN_BACKOFF_MAX": f"{LOGIN_BACKOFF_MAX:g}s",
    }
    audit = AuditLog(stack.vault_audit_log)
    login_path = f"auth/{auth_mount}/login"
    with running_operator(env, tmp_path / "op.log") as operator:
        mark = audit.mark()
        token_requests_before = _token_requests(stack)
        started = time.monotonic()
        for i in range(REFUSED):
            create_vaultsecret(kube_api, namespace, f"r{i}", {"path": f"e2e/{namespace}/r{i}", "auth": auth})
        wait_for(
            lambda: (
                [c["reason"] for c in _ready_conditions(kube_api, namespace).values()]
                == ["AuthFailed"] * REFUSED
            ),
            timeout=30,
            what=f"{REFUSED} VaultSecrets AuthFailed",
        )
        time.sleep(max(0.0, started + FLOOD_WINDOW - time.monotonic()))
        logins = audit.count(login_path, since=mark)
        token_requests = _token_requests(stack) - token_requests_before
        messages = {c["message"] for c in _ready_conditions(kube_api, namespace).values()}
        print(
            f"\n{REFUSED} refused VaultSecrets, {FLOOD_WINDOW:g} s:",
            f"{logins} logins, {token_requests:g} TokenRequests",
        )
        # Every object got the same error, the one Vault's refusal gave.
        assert len(messages) == 1
        assert f"role later does not exist at auth/{auth_mount}" in messages.pop()
        # Retried (the backoff passes), but per identity: not per VaultSecret.
        assert 2 <= logins <= MAX_ATTEMPTS_IN_WINDOW
        assert token_requests <= MAX_ATTEMPTS_IN_WINDOW

        fixed_mark = audit.mark()
        _role(vault_admin, auth_mount, "later", namespace, "app", token_ttl=3600)
        fixed = time.monotonic()
        # Bounded: the identity's next attempt comes within the cap (8 s), then each object's next retry
        # (VAULTSYNC_BACKOFF_MAX, 5 s) finds its token; slack for 40 syncs on a busy machine.
        wait_for(
            lambda: _ready_count(kube_api, namespace) == REFUSED,
            timeout=LOGIN_BACKOFF_MAX + 5 + 20,
            what=f"{REFUSED} VaultSecrets Ready after the role was created",
        )
        recovered = time.monotonic() - fixed
        logins_after = audit.count(login_path, since=fixed_mark)
        print(f"all {REFUSED} Ready {recovered:.1f} s after the fix, with {logins_after} login(s)")
        assert logins_after <= 2  # the successful one (and at most one refused attempt still in flight)
        for i in (0, REFUSED - 1):
            assert secret_data(kube_api, namespace, f"r{i}") == {"value": values[i].encode()}
    assert_no_leaks(operator.log_text(), secret_values)
