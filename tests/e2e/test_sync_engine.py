"""The sync engine end to end (issue 4), with the session's shared operator: refresh and jitter, change
detection without writes, drift repair, rollout restarts, conditions and version pinning.

Outages, restarts and ownership live in test_sync_engine_outages.py, test_sync_engine_restarts.py and
test_sync_engine_ownership.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import statistics
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e.conftest import ValueFactory
from tests.e2e.kube import (
    create_vaultsecret,
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
    create_workload,
    event_list,
    leaks_in,
    operator_writes,
    read_workload,
    restarted_at,
    secret_snapshot,
    vault_reads,
    vault_reads_by_path,
    wait_for_event,
    wait_for_reads,
)
from vaultsync.core.mac import object_mac_key, secret_mac
from vaultsync.devstack.demo import OPERATOR_NAMESPACE
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin
from vaultsync.runtime import MAC_KEY_SECRET

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture(autouse=True)
def _no_leaks(kube_api: client.ApiClient, namespace: str, secret_values: set[str]) -> Iterator[None]:
    """After every test: no secret value in the namespace's Events or VaultSecrets."""
    yield
    assert_no_leak_in_namespace(kube_api, namespace, secret_values)


def force_sync(stack: LocalStack, api: client.ApiClient, namespace: str, name: str, path: str) -> None:
    """Changes the refresh annotation and waits until the forced sync has read Vault."""
    mark = time.time()
    value = f"{time.monotonic():.6f}"
    patch_vaultsecret(api, namespace, name, {"metadata": {"annotations": {"vaultsync.io/refresh": value}}})
    wait_for_reads(stack, path, 1, after=mark, timeout=10)


# 1. Refresh -------------------------------------------------------------------------------------------------
def test_many_vaultsecrets_created_together_rotate_within_interval_spread_by_jitter(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    count, interval = 50, 20.0
    names = [f"s{i:02d}" for i in range(count)]
    first = {name: new_value() for name in names}
    for name in names:
        vault_admin.kv_put(f"e2e/{namespace}/{name}", {"value": first[name]})
    for name in names:
        create_vaultsecret(
            kube_api, namespace, name, {"path": f"e2e/{namespace}/{name}", "refreshInterval": "20s"}
        )
    for name in names:
        wait_ready(kube_api, namespace, name, timeout=60)
    # Rotate every value now: each VaultSecret must pick its change up at its own refresh.
    second = {name: new_value() for name in names}
    for name in names:
        vault_admin.kv_put(f"e2e/{namespace}/{name}", {"value": second[name]})
    wait_for(
        lambda: all(secret_data(kube_api, namespace, n) == {"value": second[n].encode()} for n in names),
        timeout=interval * 1.1 + 30,
        interval=1.0,
        what="every Secret to hold its rotated value",
    )
    reads = vault_reads_by_path(stack, f"e2e/{namespace}/")
    assert sorted(reads) == sorted(f"e2e/{namespace}/{n}" for n in names)
    # The first read is the first sync; the second is the refresh that found the rotated value.
    gaps = [times[1] - times[0] for times in reads.values()]
    refreshes = [times[1] for times in reads.values()]
    # Within interval +- 10 % jitter (+ slack for a loaded machine).
    assert min(gaps) > interval * 0.9 - 0.5, sorted(gaps)
    assert max(gaps) < interval * 1.1 + 3.0, sorted(gaps)
    # Spread over the jitter window (a uniform spread over 4 s has a deviation of ~1.15 s): not all at once.
    assert max(gaps) - min(gaps) > 1.5, sorted(gaps)
    assert statistics.pstdev(gaps) > 0.5, sorted(gaps)
    assert max(refreshes) - min(refreshes) > 1.5
    rotated = [e for e in event_list(kube_api, namespace, "s00") if e.reason == "Rotated"]
    assert rotated and rotated[0].type == "Normal"


def test_reads_of_one_path_that_fall_due_together_are_shared(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    path = f"e2e/{namespace}/shared"
    value = new_value()
    vault_admin.kv_put(path, {"value": value})
    names = [f"consumer-{i}" for i in range(8)]
    for name in names:
        create_vaultsecret(kube_api, namespace, name, {"path": path, "refreshInterval": "1h"})
    for name in names:
        wait_ready(kube_api, namespace, name)
        assert secret_data(kube_api, namespace, name) == {"value": value.encode()}
    # Eight syncs fell due together: far fewer than eight reads (one, plus stragglers on a loaded machine).
    assert 1 <= len(vault_reads(stack, path)) <= 3, vault_reads(stack, path)


def test_refresh_interval_zero_syncs_once_and_the_refresh_annotation_forces_a_sync(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    once_path, control_path = f"e2e/{namespace}/once", f"e2e/{namespace}/control"
    old, new, newer, control_new = new_value(), new_value(), new_value(), new_value()
    vault_admin.kv_put(once_path, {"value": old})
    vault_admin.kv_put(control_path, {"value": new_value()})
    create_vaultsecret(kube_api, namespace, "once", {"path": once_path, "refreshInterval": "0"})
    create_vaultsecret(kube_api, namespace, "control", {"path": control_path, "refreshInterval": "1s"})
    wait_ready(kube_api, namespace, "once")
    wait_ready(kube_api, namespace, "control")
    changed_at = time.time()
    vault_admin.kv_put(once_path, {"value": new})
    vault_admin.kv_put(control_path, {"value": control_new})
    # The control VaultSecret (1s) refreshes several times meanwhile; the `0` one never reads again.
    wait_for(
        lambda: secret_data(kube_api, namespace, "control") == {"value": control_new.encode()},
        timeout=15,
        what="the control Secret to rotate",
    )
    wait_for_reads(stack, control_path, 4, after=changed_at, timeout=20)
    assert secret_data(kube_api, namespace, "once") == {"value": old.encode()}
    assert len(vault_reads(stack, once_path)) == 1

    forced_at = time.monotonic()
    patch_vaultsecret(
        kube_api, namespace, "once", {"metadata": {"annotations": {"vaultsync.io/refresh": "1"}}}
    )
    wait_for(
        lambda: secret_data(kube_api, namespace, "once") == {"value": new.encode()},
        timeout=5,
        interval=0.1,
        what="the refresh annotation to force a sync",
    )
    assert time.monotonic() - forced_at < 5
    # Each new value of the annotation forces another sync; the same value does not.
    vault_admin.kv_put(once_path, {"value": newer})
    patch_vaultsecret(
        kube_api, namespace, "once", {"metadata": {"annotations": {"vaultsync.io/refresh": "2"}}}
    )
    wait_for(
        lambda: secret_data(kube_api, namespace, "once") == {"value": newer.encode()},
        timeout=5,
        interval=0.1,
        what="a second forced sync",
    )
    assert len(vault_reads(stack, once_path)) == 3


# 2. Change detection without plaintext hashes ---------------------------------------------------------------
def test_unchanged_refreshes_write_nothing_and_the_mac_is_keyed(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
    operator: OperatorProcess,
) -> None:
    path = f"e2e/{namespace}/quiet"
    password = new_value()
    vault_admin.kv_put(path, {"username": "app", "password": password})
    create_vaultsecret(kube_api, namespace, "quiet", {"path": path, "refreshInterval": "1s"})
    wait_ready(kube_api, namespace, "quiet")
    secret_before = secret_snapshot(kube_api, namespace, "quiet")
    vs_before = get_vaultsecret(kube_api, namespace, "quiet") or {}
    mark = time.time()
    # Five refreshes later (the fifth read proves the syncs of the first four are complete) ...
    wait_for_reads(stack, path, 5, after=mark, timeout=30)
    # ... neither the Secret nor the VaultSecret (status included) was written.
    assert secret_snapshot(kube_api, namespace, "quiet") == secret_before
    vs_after = get_vaultsecret(kube_api, namespace, "quiet") or {}
    assert vs_after["metadata"]["resourceVersion"] == vs_before["metadata"]["resourceVersion"]
    assert vs_after["status"] == vs_before["status"]
    assert operator_writes(stack, namespace, since=mark) == []

    # status.secretMAC is HMAC-SHA256 keyed with this object's key, derived from the key in the operator's
    # namespace (issue 10, finding 8), not a plain hash and not the master key itself.
    key_secret = get_secret(kube_api, OPERATOR_NAMESPACE, MAC_KEY_SECRET)
    assert key_secret is not None, "the HMAC key Secret exists in the operator's namespace"
    key = base64.b64decode((key_secret.data or {})["key"])
    assert len(key) >= 16
    data = secret_data(kube_api, namespace, "quiet") or {}
    mac = vs_after["status"]["secretMAC"]
    assert mac.startswith("hmac-sha256:")
    assert mac == secret_mac(object_mac_key(key, namespace, vs_after["metadata"]["uid"]), data)
    assert mac != secret_mac(key, data)
    plain = [
        hashlib.sha256(json.dumps({k: v.decode() for k, v in data.items()}, sort_keys=True).encode()),
        hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(data.items()))),
        hashlib.sha256(password.encode()),
    ]
    assert mac.removeprefix("hmac-sha256:") not in [h.hexdigest() for h in plain]
    assert secret_mac(b"another-key-0123456789", data) != mac
    # The key itself is never logged.
    assert leaks_in(operator.log_text(), [key.hex(), base64.b64encode(key).decode()]) == []


# 3. Drift repair --------------------------------------------------------------------------------------------
def test_a_secret_edited_or_deleted_by_hand_is_restored_within_seconds(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    path = f"e2e/{namespace}/guarded"
    password = new_value()
    vault_admin.kv_put(path, {"password": password})
    create_vaultsecret(kube_api, namespace, "guarded", {"path": path, "refreshInterval": "1h"})
    wait_ready(kube_api, namespace, "guarded")
    core = client.CoreV1Api(kube_api)
    expected = {"password": password.encode()}

    # An edit of the data (a changed value and an extra key) is undone: no waiting for the hourly refresh.
    edited_at = time.monotonic()
    core.patch_namespaced_secret(
        "guarded",
        namespace,
        {"data": {"password": base64.b64encode(b"tampered").decode(), "extra": "eA=="}},
    )
    wait_for(
        lambda: secret_data(kube_api, namespace, "guarded") == expected,
        timeout=5,
        interval=0.1,
        what="the edited Secret to be restored",
    )
    assert time.monotonic() - edited_at < 5
    wait_for_event(kube_api, namespace, "guarded", "DriftRepaired", timeout=10)

    # A deleted Secret is re-created (still owned by the VaultSecret).
    uid = get_secret(kube_api, namespace, "guarded").metadata.uid  # type: ignore[union-attr]
    deleted_at = time.monotonic()
    core.delete_namespaced_secret("guarded", namespace)
    restored = wait_for(
        lambda: (s := get_secret(kube_api, namespace, "guarded")) is not None and s.metadata.uid != uid and s,
        timeout=5,
        interval=0.1,
        what="the deleted Secret to be re-created",
    )
    assert time.monotonic() - deleted_at < 5
    assert secret_data(kube_api, namespace, "guarded") == expected
    assert [ref.kind for ref in restored.metadata.owner_references or []] == ["VaultSecret"]
    wait_for(
        lambda: sum(e.reason == "DriftRepaired" for e in event_list(kube_api, namespace, "guarded")) >= 2,
        timeout=10,
        what="a second DriftRepaired Event",
    )
    messages = [e.message for e in event_list(kube_api, namespace, "guarded") if e.reason == "DriftRepaired"]
    assert any("deleted" in m for m in messages) and any("changed" in m for m in messages)

    # Our managed-by label removed by hand (the label-selected watch sees the Secret "leave"): it is still
    # ours (owner annotation, ownerReference), so it is repaired, not reported as a TargetConflict.
    core.patch_namespaced_secret(
        "guarded", namespace, {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}}
    )
    wait_for(
        lambda: (
            (
                (get_secret(kube_api, namespace, "guarded").metadata.labels or {}).get(  # type: ignore[union-attr]
                    "app.kubernetes.io/managed-by"
                )
            )
            == "vaultsync"
        ),
        timeout=5,
        interval=0.1,
        what="the managed-by label to be restored",
    )
    assert (ready(kube_api, namespace, "guarded") or {}).get("status") == "True"
    assert "TargetConflict" not in [e.reason for e in event_list(kube_api, namespace, "guarded")]

    # Metadata that others add is not drift: nothing is rewritten for it, not even by a forced sync.
    core.patch_namespaced_secret("guarded", namespace, {"metadata": {"annotations": {"team": "blue"}}})
    snapshot = secret_snapshot(kube_api, namespace, "guarded")
    force_sync(stack, kube_api, namespace, "guarded", path)
    force_sync(stack, kube_api, namespace, "guarded", path)  # the second read: the first sync is complete
    assert secret_snapshot(kube_api, namespace, "guarded") == snapshot
    assert (ready(kube_api, namespace, "guarded") or {}).get("status") == "True"


# 6. Rollout restarts ----------------------------------------------------------------------------------------
def test_rollout_restarts_once_per_change_never_on_first_sync_and_missing_targets_only_warn(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    path = f"e2e/{namespace}/app"
    vault_admin.kv_put(path, {"token": new_value()})
    workloads = [("Deployment", "web"), ("StatefulSet", "db"), ("DaemonSet", "agent")]
    for kind, name in workloads:
        create_workload(kube_api, namespace, kind, name)
    targets = [{"kind": kind, "name": name} for kind, name in workloads]
    targets.append({"kind": "Deployment", "name": "ghost"})
    create_vaultsecret(
        kube_api,
        namespace,
        "app",
        {"path": path, "refreshInterval": "1s", "rolloutRestartTargets": targets},
    )
    wait_ready(kube_api, namespace, "app")
    generations = {
        name: read_workload(kube_api, namespace, kind, name).metadata.generation for kind, name in workloads
    }
    mark = time.time()
    wait_for_reads(stack, path, 3, after=mark, timeout=20)
    # The first sync (and the unchanged refreshes after it) restart nothing.
    for kind, name in workloads:
        assert restarted_at(kube_api, namespace, kind, name) is None
        assert read_workload(kube_api, namespace, kind, name).metadata.generation == generations[name]

    vault_admin.kv_put(path, {"token": new_value()})
    stamps = {
        name: wait_for(
            lambda k=kind, n=name: restarted_at(kube_api, namespace, k, n),  # type: ignore[misc]
            timeout=15,
            what=f"{kind} {name} to be restarted",
        )
        for kind, name in workloads
    }
    # Several refreshes later: restarted exactly once (one template change each), not again.
    mark = time.time()
    wait_for_reads(stack, path, 4, after=mark, timeout=20)
    for kind, name in workloads:
        assert restarted_at(kube_api, namespace, kind, name) == stamps[name]
        assert read_workload(kube_api, namespace, kind, name).metadata.generation == generations[name] + 1
    failed = wait_for_event(kube_api, namespace, "app", "RolloutRestartFailed", timeout=10)
    assert failed.type == "Warning" and "ghost" in failed.message
    wait_for(
        lambda: sum(e.reason == "RolloutRestarted" for e in event_list(kube_api, namespace, "app")) == 3,
        timeout=10,
        what="one RolloutRestarted Event per target",
    )
    condition = ready(kube_api, namespace, "app") or {}
    assert (condition.get("status"), condition.get("reason")) == ("True", "Synced")

    # A drift repair restores the same data: no restart for it.
    client.CoreV1Api(kube_api).delete_namespaced_secret("app", namespace)
    wait_for(lambda: get_secret(kube_api, namespace, "app"), timeout=10, what="the Secret to be re-created")
    wait_for_event(kube_api, namespace, "app", "DriftRepaired", timeout=10)
    for kind, name in workloads:
        assert restarted_at(kube_api, namespace, kind, name) == stamps[name]


# 8. Conditions, Events, version pinning ---------------------------------------------------------------------
def test_ready_condition_follows_kubernetes_conventions(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    path = f"e2e/{namespace}/conv"
    vault_admin.kv_put(path, {"value": new_value()})
    created = create_vaultsecret(kube_api, namespace, "conv", {"path": path, "refreshInterval": "1s"})
    first = wait_ready(kube_api, namespace, "conv")
    assert first["observedGeneration"] == created["metadata"]["generation"] == 1
    assert first["reason"] == "Synced"
    since = first["lastTransitionTime"]
    # Two rotations, seconds apart, while Ready stays True: lastTransitionTime does not move.
    for _ in range(2):
        value = new_value()
        vault_admin.kv_put(path, {"value": value})
        wait_for(
            lambda v=value: secret_data(kube_api, namespace, "conv") == {"value": v.encode()},  # type: ignore[misc]
            timeout=15,
            what="the rotation",
        )
        time.sleep(1.1)  # lastTransitionTime has a resolution of one second
    status = (get_vaultsecret(kube_api, namespace, "conv") or {})["status"]
    condition = ready(kube_api, namespace, "conv") or {}
    assert condition["status"] == "True" and condition["lastTransitionTime"] == since
    assert status["lastSyncTime"] > since  # the Secret's data changed after the first sync
    assert status["observedGeneration"] == 1
    wait_for(
        lambda: (
            sorted(e.reason for e in event_list(kube_api, namespace, "conv"))
            == ["Rotated", "Rotated", "Synced"]
        ),
        timeout=10,
        what="one Synced and two Rotated Events",
    )

    # A spec change to a failing spec: the generation moves, Ready flips and its transition time moves.
    patch_vaultsecret(kube_api, namespace, "conv", {"spec": {"path": f"e2e/{namespace}/absent"}})
    failed = wait_ready(kube_api, namespace, "conv", status="False", reason="NotFound")
    assert failed["observedGeneration"] == 2
    assert failed["lastTransitionTime"] > since
    assert (get_vaultsecret(kube_api, namespace, "conv") or {})["status"]["observedGeneration"] == 2
    time.sleep(1.1)
    patch_vaultsecret(kube_api, namespace, "conv", {"spec": {"path": path}})
    back = wait_ready(kube_api, namespace, "conv")
    assert back["observedGeneration"] == 3
    assert back["lastTransitionTime"] > failed["lastTransitionTime"]


def test_changing_the_secret_type_replaces_the_secret_with_an_event(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    path = f"e2e/{namespace}/login"
    vault_admin.kv_put(path, {"username": "app", "password": new_value()})
    create_vaultsecret(kube_api, namespace, "login", {"path": path})
    wait_ready(kube_api, namespace, "login")
    before = get_secret(kube_api, namespace, "login")
    assert before is not None and before.type == "Opaque"
    patch_vaultsecret(kube_api, namespace, "login", {"spec": {"type": "kubernetes.io/basic-auth"}})
    after = wait_for(
        lambda: (
            (s := get_secret(kube_api, namespace, "login")) is not None
            and s.type == "kubernetes.io/basic-auth"
            and s
        ),
        timeout=15,
        what="the Secret's type to change",
    )
    assert after.metadata.uid != before.metadata.uid
    assert after.data == before.data
    wait_for_event(kube_api, namespace, "login", "SecretReplaced")


def test_pinned_version_is_read_and_its_deletion_or_destruction_is_reported(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    path = f"e2e/{namespace}/pinned"
    values = [new_value() for _ in range(3)]
    for value in values:
        vault_admin.kv_put(path, {"value": value})
    create_vaultsecret(kube_api, namespace, "pinned", {"path": path, "version": 2, "refreshInterval": "1s"})
    wait_ready(kube_api, namespace, "pinned")
    expected = {"value": values[1].encode()}
    assert secret_data(kube_api, namespace, "pinned") == expected
    status = (get_vaultsecret(kube_api, namespace, "pinned") or {})["status"]
    assert status["vaultVersion"] == {f"secret/e2e/{namespace}/pinned": 2}
    # A newer version does not move a pinned VaultSecret.
    vault_admin.kv_put(path, {"value": new_value()})
    mark = time.time()
    wait_for_reads(stack, path, 3, after=mark, timeout=20)
    assert secret_data(kube_api, namespace, "pinned") == expected
    snapshot = secret_snapshot(kube_api, namespace, "pinned")

    kv2 = vault_admin.client.secrets.kv.v2
    kv2.delete_secret_versions(path=path, versions=[2], mount_point="secret")
    deleted = wait_ready(kube_api, namespace, "pinned", status="False", reason="NotFound", timeout=15)
    assert "version 2" in deleted["message"] and "deleted" in deleted["message"]
    assert "kept" in deleted["message"]
    assert secret_snapshot(kube_api, namespace, "pinned") == snapshot
    warning = wait_for_event(kube_api, namespace, "pinned", "NotFound")
    assert warning.type == "Warning"

    kv2.undelete_secret_versions(path=path, versions=[2], mount_point="secret")
    wait_ready(kube_api, namespace, "pinned", timeout=15)
    kv2.destroy_secret_versions(path=path, versions=[2], mount_point="secret")
    destroyed = wait_ready(kube_api, namespace, "pinned", status="False", reason="NotFound", timeout=15)
    assert "destroyed" in destroyed["message"]
    mark = time.time()
    wait_for_reads(stack, path, 2, after=mark, timeout=20)
    assert secret_snapshot(kube_api, namespace, "pinned") == snapshot


def test_operator_log_holds_no_secret_value(operator: OperatorProcess, secret_values: set[str]) -> None:
    """Runs last in this module: the shared operator's whole log against every value written to Vault."""
    assert secret_values
    assert leaks_in(operator.log_text(), secret_values) == []
