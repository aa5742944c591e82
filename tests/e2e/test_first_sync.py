"""The core path end to end: the real operator process, real kube-apiserver and real OpenBao."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.conftest import ValueFactory
from tests.e2e.kube import (
    create_vaultsecret,
    delete_vaultsecret,
    get_secret,
    get_vaultsecret,
    patch_vaultsecret,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.e2e.operator_process import OperatorProcess
from vaultsync.devstack.vault_admin import VaultAdmin

pytestmark = pytest.mark.usefixtures("operator")


def test_create_writes_exactly_vaults_data(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    password = new_value()
    vault_admin.kv_put(f"e2e/{namespace}/db", {"username": "app", "password": password, "port": 5432})
    created = create_vaultsecret(kube_api, namespace, "db", {"path": f"e2e/{namespace}/db"})

    condition = wait_ready(kube_api, namespace, "db")
    assert condition["reason"] == "Synced"
    assert secret_data(kube_api, namespace, "db") == {
        "username": b"app",
        "password": password.encode(),
        "port": b"5432",
    }
    secret = get_secret(kube_api, namespace, "db")
    assert secret is not None
    assert secret.type == "Opaque"
    owners = secret.metadata.owner_references or []
    assert [(o.kind, o.name, o.uid) for o in owners] == [("VaultSecret", "db", created["metadata"]["uid"])]
    status = (get_vaultsecret(kube_api, namespace, "db") or {})["status"]
    assert status["secretName"] == "db"
    assert status["observedGeneration"] == created["metadata"]["generation"]
    assert status["lastSyncTime"]
    assert status["vaultVersion"] == {f"secret/e2e/{namespace}/db": 1}
    assert status["secretMAC"].startswith("hmac-sha256:")
    assert password not in str(status)


def test_vault_change_rotates_the_secret_within_the_refresh_interval(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    first, second = new_value(), new_value()
    vault_admin.kv_put(f"e2e/{namespace}/rotating", {"token": first})
    create_vaultsecret(
        kube_api, namespace, "rotating", {"path": f"e2e/{namespace}/rotating", "refreshInterval": "2s"}
    )
    wait_ready(kube_api, namespace, "rotating")
    assert secret_data(kube_api, namespace, "rotating") == {"token": first.encode()}

    vault_admin.kv_put(f"e2e/{namespace}/rotating", {"token": second})
    # 2 s interval + 10 % jitter; the bound is generous for a loaded 2-core machine.
    wait_for(
        lambda: secret_data(kube_api, namespace, "rotating") == {"token": second.encode()},
        timeout=15,
        what="the Secret to hold the new value",
    )
    status = (get_vaultsecret(kube_api, namespace, "rotating") or {})["status"]
    assert status["vaultVersion"] == {f"secret/e2e/{namespace}/rotating": 2}


def test_spec_change_resyncs(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    one, two = new_value(), new_value()
    vault_admin.kv_put(f"e2e/{namespace}/one", {"value": one})
    vault_admin.kv_put(f"e2e/{namespace}/two", {"value": two})
    create_vaultsecret(
        kube_api, namespace, "moving", {"path": f"e2e/{namespace}/one", "refreshInterval": "0"}
    )
    wait_ready(kube_api, namespace, "moving")
    patch_vaultsecret(kube_api, namespace, "moving", {"spec": {"path": f"e2e/{namespace}/two"}})
    wait_for(
        lambda: secret_data(kube_api, namespace, "moving") == {"value": two.encode()},
        timeout=15,
        what="the Secret to follow the new path",
    )


def test_kv_v1(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    value = new_value()
    vault_admin.kv1_put(f"e2e/{namespace}/legacy", {"api-key": value}, mount="kv1")
    create_vaultsecret(
        kube_api, namespace, "legacy", {"path": f"e2e/{namespace}/legacy", "mount": "kv1", "kv": "v1"}
    )
    wait_ready(kube_api, namespace, "legacy")
    assert secret_data(kube_api, namespace, "legacy") == {"api-key": value.encode()}
    assert (get_vaultsecret(kube_api, namespace, "legacy") or {})["status"]["vaultVersion"] == {}


def test_deleting_the_vaultsecret_garbage_collects_the_secret(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    vault_admin.kv_put(f"e2e/{namespace}/gc", {"value": new_value()})
    create_vaultsecret(kube_api, namespace, "gc", {"path": f"e2e/{namespace}/gc"})
    wait_ready(kube_api, namespace, "gc")
    assert get_secret(kube_api, namespace, "gc") is not None
    delete_vaultsecret(kube_api, namespace, "gc")
    wait_for(lambda: get_secret(kube_api, namespace, "gc") is None, timeout=60, what="garbage collection")


def test_missing_path_is_not_found(kube_api: client.ApiClient, namespace: str) -> None:
    create_vaultsecret(kube_api, namespace, "missing", {"path": f"e2e/{namespace}/does-not-exist"})
    condition = wait_ready(kube_api, namespace, "missing", status="False", reason="NotFound")
    assert f"e2e/{namespace}/does-not-exist" in condition["message"]
    assert get_secret(kube_api, namespace, "missing") is None


def test_path_outside_the_policy_is_permission_denied(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    value = new_value()
    vault_admin.kv_put(f"forbidden/{namespace}", {"value": value})
    create_vaultsecret(kube_api, namespace, "denied", {"path": f"forbidden/{namespace}"})
    condition = wait_ready(kube_api, namespace, "denied", status="False", reason="PermissionDenied")
    assert "policies" in condition["message"]
    assert value not in condition["message"]
    assert get_secret(kube_api, namespace, "denied") is None


@pytest.mark.parametrize(
    "spec",
    [
        {"path": "x", "refreshInterval": "5 minutes"},
        {"path": "x", "kv": "v3"},
        {"path": "x", "version": 0},
        {"refreshInterval": "1h"},
        {"path": "x", "target": {"creationPolicy": "Adopt"}},
        {"path": "x", "rolloutRestartTargets": [{"kind": "Pod", "name": "x"}]},
    ],
)
def test_schema_rejects_bad_input_at_apply_time(
    kube_api: client.ApiClient, namespace: str, spec: dict[str, object]
) -> None:
    with pytest.raises(ApiException) as raised:
        create_vaultsecret(kube_api, namespace, "bad", spec)
    assert raised.value.status == 422


def test_empty_strings_are_accepted_by_the_local_api_server(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    """The local kube-apiserver is patched for kubernetes#99804 (empty strings rejected as null)."""
    vault_admin.kv_put(f"e2e/{namespace}/empty", {"value": new_value()})
    spec = {"path": f"e2e/{namespace}/empty", "target": {"annotations": {"example.com/note": ""}}}
    create_vaultsecret(kube_api, namespace, "empty", spec)
    wait_ready(kube_api, namespace, "empty")
    secret = get_secret(kube_api, namespace, "empty")
    assert secret is not None
    assert secret.metadata.annotations["example.com/note"] == ""


def test_operator_log_holds_no_secret_value(operator: OperatorProcess, secret_values: set[str]) -> None:
    """Runs last in this module: the whole run's log against every value the tests wrote to Vault."""
    assert secret_values, "the tests above registered their values"
    log = operator.log_text()
    assert "synced" in log.lower() or "created" in log.lower()
    leaked = [v for v in secret_values if v in log or base64.b64encode(v.encode()).decode() in log]
    assert leaked == []
