"""Ownership (issue 4, behaviour 7): creationPolicy Owner / Orphan / Merge, TargetConflict, target renames."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator

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
    ready,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.sync_support import (
    assert_no_leak_in_namespace,
    leaks_in,
    secret_snapshot,
    vault_reads,
    wait_for_event,
)
from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture(autouse=True)
def _no_leaks(kube_api: client.ApiClient, namespace: str, secret_values: set[str]) -> Iterator[None]:
    yield
    assert_no_leak_in_namespace(kube_api, namespace, secret_values)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _foreign_secret(api: client.ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    """A Secret that vaultsync did not create."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"app": "legacy"}, "annotations": {"team": "payments"}},
        "type": "Opaque",
        "data": {k: _b64(v) for k, v in data.items()},
    }
    client.CoreV1Api(api).create_namespaced_secret(namespace, body)


def _gone(api: client.ApiClient, namespace: str, name: str) -> bool:
    return get_vaultsecret(api, namespace, name) is None


def test_owner_is_collected_with_the_vaultsecret_and_orphan_is_kept(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    path = f"e2e/{namespace}/app"
    vault_admin.kv_put(path, {"password": new_value()})
    owned = create_vaultsecret(kube_api, namespace, "owned", {"path": path})
    create_vaultsecret(
        kube_api, namespace, "orphaned", {"path": path, "target": {"creationPolicy": "Orphan"}}
    )
    wait_ready(kube_api, namespace, "owned")
    wait_ready(kube_api, namespace, "orphaned")
    owner_refs = get_secret(kube_api, namespace, "owned").metadata.owner_references  # type: ignore[union-attr]
    assert [(r.kind, r.name, r.uid, r.controller) for r in owner_refs] == [
        ("VaultSecret", "owned", owned["metadata"]["uid"], True)
    ]
    assert not get_secret(kube_api, namespace, "orphaned").metadata.owner_references  # type: ignore[union-attr]
    orphan_data = secret_data(kube_api, namespace, "orphaned")

    delete_vaultsecret(kube_api, namespace, "orphaned")
    delete_vaultsecret(kube_api, namespace, "owned")
    wait_for(lambda: _gone(kube_api, namespace, "orphaned"), timeout=30, what="the Orphan VaultSecret to go")
    # The garbage collector removes the owned Secret; by then it has long seen the orphaned one (no owner).
    wait_for(lambda: get_secret(kube_api, namespace, "owned") is None, timeout=60, what="garbage collection")
    assert secret_data(kube_api, namespace, "orphaned") == orphan_data


def test_merge_writes_only_our_keys_and_removes_only_them_on_deletion(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    path = f"e2e/{namespace}/merged"
    ours = new_value()
    vault_admin.kv_put(path, {"password": ours, "user": "app"})
    _foreign_secret(kube_api, namespace, "shared", {"config": "mode=fast", "other": "theirs"})
    create_vaultsecret(
        kube_api,
        namespace,
        "merger",
        {"path": path, "refreshInterval": "1s", "target": {"name": "shared", "creationPolicy": "Merge"}},
    )
    wait_ready(kube_api, namespace, "merger")
    assert secret_data(kube_api, namespace, "shared") == {
        "config": b"mode=fast",
        "other": b"theirs",
        "password": ours.encode(),
        "user": b"app",
    }
    secret = get_secret(kube_api, namespace, "shared")
    assert secret is not None and not secret.metadata.owner_references
    assert secret.metadata.labels["app"] == "legacy" and secret.metadata.annotations["team"] == "payments"
    vs = get_vaultsecret(kube_api, namespace, "merger") or {}
    assert "vaultsync.io/merge-cleanup" in vs["metadata"]["finalizers"]

    # Their keys are theirs: an edit of one is not drift, and a rotation of ours leaves theirs alone.
    client.CoreV1Api(kube_api).patch_namespaced_secret(
        "shared", namespace, {"data": {"other": _b64("edited")}}
    )
    rotated = new_value()
    vault_admin.kv_put(path, {"password": rotated, "user": "app"})
    wait_for(
        lambda: (secret_data(kube_api, namespace, "shared") or {}).get("password") == rotated.encode(),
        timeout=15,
        what="our key to rotate",
    )
    assert secret_data(kube_api, namespace, "shared") == {
        "config": b"mode=fast",
        "other": b"edited",
        "password": rotated.encode(),
        "user": b"app",
    }

    # One of OUR keys removed by hand is drift: restored at once, theirs untouched.
    client.CoreV1Api(kube_api).patch_namespaced_secret("shared", namespace, {"data": {"user": None}})
    wait_for(
        lambda: (secret_data(kube_api, namespace, "shared") or {}).get("user") == b"app",
        timeout=5,
        interval=0.1,
        what="our removed key to be restored",
    )
    assert (secret_data(kube_api, namespace, "shared") or {})["other"] == b"edited"

    delete_vaultsecret(kube_api, namespace, "merger")
    wait_for(lambda: _gone(kube_api, namespace, "merger"), timeout=30, what="the finalizer to be removed")
    after = get_secret(kube_api, namespace, "shared")
    assert after is not None, "a merged Secret is never deleted"
    assert secret_data(kube_api, namespace, "shared") == {"config": b"mode=fast", "other": b"edited"}
    assert after.metadata.labels == {"app": "legacy"}
    assert after.metadata.annotations == {"team": "payments"}


def test_namespace_deletion_with_a_merge_vaultsecret_completes(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, new_value: ValueFactory, secret_values: set[str]
) -> None:
    namespace = f"t-{secrets.token_hex(4)}"  # watched by the shared operator; deleted by the test itself
    kube_admin.create_namespace(kube_api, namespace)
    try:
        path = f"e2e/{namespace}/merged"
        vault_admin.kv_put(path, {"password": new_value()})
        _foreign_secret(kube_api, namespace, "shared", {"other": "theirs"})
        create_vaultsecret(
            kube_api,
            namespace,
            "merger",
            {"path": path, "target": {"name": "shared", "creationPolicy": "Merge"}},
        )
        wait_ready(kube_api, namespace, "merger")
        vs = get_vaultsecret(kube_api, namespace, "merger") or {}
        assert "vaultsync.io/merge-cleanup" in vs["metadata"]["finalizers"]
        assert_no_leak_in_namespace(kube_api, namespace, secret_values)
    finally:
        kube_admin.delete_namespace(kube_api, namespace)

    def deleted() -> bool:
        try:
            client.CoreV1Api(kube_api).read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_for(deleted, timeout=120, interval=1.0, what=f"namespace {namespace} to be deleted")


@pytest.mark.parametrize("policy", ["Owner", "Orphan"])
def test_a_foreign_secret_is_a_target_conflict_and_left_untouched(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
    policy: str,
) -> None:
    path = f"e2e/{namespace}/app"
    vault_admin.kv_put(path, {"password": new_value()})
    _foreign_secret(kube_api, namespace, "legacy", {"password": "hand-made"})
    before = get_secret(kube_api, namespace, "legacy")
    create_vaultsecret(
        kube_api, namespace, "app", {"path": path, "target": {"name": "legacy", "creationPolicy": policy}}
    )
    condition = wait_ready(kube_api, namespace, "app", status="False", reason="TargetConflict")
    assert "legacy" in condition["message"] and "Merge" in condition["message"]
    assert wait_for_event(kube_api, namespace, "app", "TargetConflict").type == "Warning"
    # It is retried (a conflict can be resolved by deleting the Secret): still nothing written.
    reads = len(vault_reads(stack, path))
    wait_for(lambda: len(vault_reads(stack, path)) >= reads + 2, timeout=20, what="two retries")
    after = get_secret(kube_api, namespace, "legacy")
    assert after is not None and before is not None
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.data == before.data and after.metadata.labels == before.metadata.labels
    assert after.metadata.annotations == before.metadata.annotations and not after.metadata.owner_references

    # Once the foreign Secret is gone, the VaultSecret takes the name without any other change.
    client.CoreV1Api(kube_api).delete_namespaced_secret("legacy", namespace)
    wait_ready(kube_api, namespace, "app", timeout=20)
    assert (secret_data(kube_api, namespace, "legacy") or {}).keys() == {"password"}


def test_two_vaultsecrets_targeting_one_secret_the_second_gets_target_conflict(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    first_value = new_value()
    vault_admin.kv_put(f"e2e/{namespace}/first", {"value": first_value})
    vault_admin.kv_put(f"e2e/{namespace}/second", {"value": new_value()})
    create_vaultsecret(
        kube_api, namespace, "first", {"path": f"e2e/{namespace}/first", "target": {"name": "together"}}
    )
    wait_ready(kube_api, namespace, "first")
    snapshot = secret_snapshot(kube_api, namespace, "together")
    create_vaultsecret(
        kube_api, namespace, "second", {"path": f"e2e/{namespace}/second", "target": {"name": "together"}}
    )
    condition = wait_ready(kube_api, namespace, "second", status="False", reason="TargetConflict")
    assert "first" in condition["message"]
    assert secret_snapshot(kube_api, namespace, "together") == snapshot
    assert secret_data(kube_api, namespace, "together") == {"value": first_value.encode()}
    assert (ready(kube_api, namespace, "first") or {}).get("status") == "True"


def test_changing_the_target_name_writes_the_new_secret_and_deletes_the_old_one(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    value = new_value()
    vault_admin.kv_put(f"e2e/{namespace}/app", {"value": value})
    create_vaultsecret(
        kube_api, namespace, "app", {"path": f"e2e/{namespace}/app", "target": {"name": "old"}}
    )
    wait_ready(kube_api, namespace, "app")
    patch_vaultsecret(kube_api, namespace, "app", {"spec": {"target": {"name": "new"}}})
    wait_for(lambda: get_secret(kube_api, namespace, "old") is None, timeout=15, what="the old Secret to go")
    assert secret_data(kube_api, namespace, "new") == {"value": value.encode()}
    vs = get_vaultsecret(kube_api, namespace, "app") or {}
    assert vs["status"]["secretName"] == "new"
    assert (ready(kube_api, namespace, "app") or {}).get("status") == "True"
    renamed = wait_for_event(kube_api, namespace, "app", "TargetRenamed")
    assert "old" in renamed.message and "new" in renamed.message

    # An Orphan Secret is not deleted by a rename either: it is kept, as it would be on deletion.
    create_vaultsecret(
        kube_api,
        namespace,
        "keeper",
        {"path": f"e2e/{namespace}/app", "target": {"name": "kept", "creationPolicy": "Orphan"}},
    )
    wait_ready(kube_api, namespace, "keeper")
    patch_vaultsecret(kube_api, namespace, "keeper", {"spec": {"target": {"name": "kept-2"}}})
    wait_for(lambda: secret_data(kube_api, namespace, "kept-2"), timeout=15, what="the renamed Secret")
    wait_for(
        lambda: (
            (get_vaultsecret(kube_api, namespace, "keeper") or {}).get("status", {}).get("secretName")
            == "kept-2"
        ),
        timeout=15,
        what="the status to name the new Secret",
    )
    assert secret_data(kube_api, namespace, "kept") == {"value": value.encode()}


def _shape(api: client.ApiClient, namespace: str, name: str) -> tuple[object, ...]:
    secret = get_secret(api, namespace, name)
    assert secret is not None
    refs = [(r.kind, r.name, r.uid) for r in secret.metadata.owner_references or []]
    digests = {k: hashlib.sha256(str(v).encode()).hexdigest() for k, v in (secret.data or {}).items()}
    return (secret.metadata.uid, secret.metadata.resource_version, secret.type, digests, refs)


@pytest.mark.parametrize("policy", ["Owner", "Orphan"])
def test_a_merge_target_is_never_taken_over_by_switching_the_policy(
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
    policy: str,
) -> None:
    """Issue 10, finding 5: Merge into a foreign Secret, then creationPolicy Owner/Orphan: TargetConflict, and
    the Secret (their keys, its type, its ownerReferences) stays byte-identical."""
    path = f"e2e/{namespace}/taker"
    vault_admin.kv_put(path, {"token": new_value()})
    core = client.CoreV1Api(kube_api)
    holder = core.create_namespaced_config_map(namespace, {"metadata": {"name": f"holder-{policy.lower()}"}})
    name = f"victim-{policy.lower()}"
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": name,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": holder.metadata.name,
                        "uid": holder.metadata.uid,
                    }
                ],
            },
            "type": "kubernetes.io/basic-auth",
            "data": {"username": _b64("admin"), "password": _b64("theirs")},
        },
    )
    vs_name = f"taker-{policy.lower()}"
    create_vaultsecret(
        kube_api, namespace, vs_name, {"path": path, "target": {"name": name, "creationPolicy": "Merge"}}
    )
    wait_ready(kube_api, namespace, vs_name)
    merged = _shape(kube_api, namespace, name)
    assert set(merged[3]) == {"username", "password", "token"}  # type: ignore[arg-type]

    patch_vaultsecret(kube_api, namespace, vs_name, {"spec": {"target": {"creationPolicy": policy}}})
    condition = wait_ready(kube_api, namespace, vs_name, status="False", reason="TargetConflict", timeout=20)
    assert "first written by creationPolicy: Merge" in condition["message"]
    assert wait_for_event(kube_api, namespace, vs_name, "TargetConflict").type == "Warning"
    assert _shape(kube_api, namespace, name) == merged

    # Deleting the VaultSecret still removes only our key (the Merge cleanup finalizer stayed).
    delete_vaultsecret(kube_api, namespace, vs_name)
    wait_for(lambda: _gone(kube_api, namespace, vs_name), timeout=30, what="the finalizer to be removed")
    assert secret_data(kube_api, namespace, name) == {"username": b"admin", "password": b"theirs"}


def test_merge_into_a_service_account_token_secret_is_a_target_conflict(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    path = f"e2e/{namespace}/sa"
    vault_admin.kv_put(path, {"token": new_value()})
    core = client.CoreV1Api(kube_api)
    wait_for(lambda: _has_default_sa(core, namespace), timeout=30, what="the default ServiceAccount")
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": "sa-token",
                "annotations": {"kubernetes.io/service-account.name": "default"},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    # The token controller fills it in; the snapshot is taken after that.
    wait_for(
        lambda: (secret_data(kube_api, namespace, "sa-token") or {}).get("token"), timeout=30, what="a token"
    )
    before = _shape(kube_api, namespace, "sa-token")
    create_vaultsecret(
        kube_api,
        namespace,
        "sa-merge",
        {"path": path, "target": {"name": "sa-token", "creationPolicy": "Merge"}},
    )
    condition = wait_ready(kube_api, namespace, "sa-merge", status="False", reason="TargetConflict")
    assert "kubernetes.io/service-account-token" in condition["message"]
    assert _shape(kube_api, namespace, "sa-token") == before


def _has_default_sa(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_operator_log_holds_no_secret_value(operator: OperatorProcess, secret_values: set[str]) -> None:
    assert leaks_in(operator.log_text(), secret_values) == []
