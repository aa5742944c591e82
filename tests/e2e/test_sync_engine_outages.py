"""Vault outages (issue 4, behaviour 4): Kubernetes is a cache in front of Vault.

OpenBao frozen (SIGSTOP) for 30 s and sealed (503) for 30 s: the Secrets stay byte-identical throughout,
Ready=False VaultUnavailable names the last good sync, a Warning Event and a metric show it, retries back off
exponentially with jitter up to the cap (5 s in the tests), and everything recovers once Vault is back.
A secret deleted or destroyed in Vault after a good sync keeps its Secret and reports NotFound. A managed
Secret deleted or edited by hand while Vault is sealed is restored from the last synced data (issue 10,
finding 10), and an upgrade from status MACs made with the master key rewrites nothing but the status
(finding 8).

These tests run an operator of their own (json logs, a short Vault timeout) in a `p-` namespace. Freezing or
sealing OpenBao affects the session's shared operator too; every test restores Vault in `finally`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import ValueFactory
from tests.e2e.kube import (
    GROUP,
    PLURAL,
    VERSION,
    create_vaultsecret,
    get_secret,
    get_vaultsecret,
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
    own_operator,
    private_namespace,
    restarted_at,
    secret_snapshot,
    wait_for_event,
    wait_for_reads,
)
from vaultsync.core.mac import object_mac_key, secret_mac
from vaultsync.devstack import kube_admin
from vaultsync.devstack.demo import OPERATOR_NAMESPACE
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

OUTAGE_SECONDS = 30.0
BACKOFF_MAX = 5.0  # VAULTSYNC_BACKOFF_MAX of operator_env


@dataclass
class Own:
    namespace: str
    operator: OperatorProcess


@pytest.fixture(scope="module")
def own(
    stack: LocalStack,
    kube_api: client.ApiClient,
    operator_token_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
    secret_values: set[str],
) -> Iterator[Own]:
    namespace = private_namespace(kube_api)
    log = tmp_path_factory.mktemp("outages") / "operator.log"
    try:
        with own_operator(
            stack,
            operator_token_file,
            namespace,
            log,
            VAULTSYNC_LOG_FORMAT="json",
            VAULTSYNC_VAULT_TIMEOUT="3s",
        ) as process:
            yield Own(namespace, process)
            assert_no_leak_in_namespace(kube_api, namespace, secret_values)
        assert leaks_in(process.log_text(), secret_values) == []
    finally:
        kube_admin.delete_namespace(kube_api, namespace)


def _watch_secrets(
    api: client.ApiClient,
    namespace: str,
    names: list[str],
    seconds: float,
    until: Callable[[], bool] | None = None,
) -> list[dict[str, str]]:
    """Polls every second for `seconds` (or until `until()`): every Secret must stay exactly as it was.
    Returns the Ready conditions seen."""
    before = {name: secret_snapshot(api, namespace, name) for name in names}
    assert all(before.values())
    seen: list[dict[str, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name in names:
            assert secret_snapshot(api, namespace, name) == before[name], f"Secret {name} changed"
            seen.append({"name": name, **(ready(api, namespace, name) or {})})
        if until is not None and until():
            return seen
        time.sleep(1.0)
    assert until is None, f"not recovered within {seconds}s; last conditions {seen[-len(names) :]}"
    return seen


def _failures(log: str, name: str, reason: str) -> list[float]:
    """Times of the operator's log records of failed syncs of one VaultSecret."""
    times = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("name") == name and entry.get("reason") == reason:
            times.append(datetime.fromisoformat(entry["time"]).timestamp())
    return times


def _failed_syncs(metrics: str, reason: str) -> float:
    prefix = f'vaultsync_syncs_total{{reason="{reason}",result="failed"}}'
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix))


def _outage(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    own: Own,
    new_value: ValueFactory,
    names: list[str],
    stop: Callable[[], None],
    restore: Callable[[], None],
) -> list[dict[str, str]]:
    namespace = own.namespace
    for name in names:
        vault_admin.kv_put(f"e2e/{namespace}/{name}", {"password": new_value(), "user": name})
        create_vaultsecret(
            kube_api, namespace, name, {"path": f"e2e/{namespace}/{name}", "refreshInterval": "2s"}
        )
    for name in names:
        wait_ready(kube_api, namespace, name)
    stop()
    try:
        during = _watch_secrets(kube_api, namespace, names, OUTAGE_SECONDS)
    finally:
        restore()
    # Back without any manual step: Ready=True again, the Secrets still untouched.
    _watch_secrets(
        kube_api,
        namespace,
        names,
        30.0,
        until=lambda: all((ready(kube_api, namespace, n) or {}).get("status") == "True" for n in names),
    )
    for name in names:
        down = [c for c in during if c["name"] == name and c.get("status") == "False"]
        assert down, f"{name} never showed Ready=False during the outage"
        assert {c["reason"] for c in down} == {"VaultUnavailable"}
        assert all("last good sync" in c["message"] and "kept" in c["message"] for c in down)
        warning = wait_for_event(kube_api, namespace, name, "VaultUnavailable")
        assert warning.type == "Warning"
    return during


def test_vault_frozen_for_30s_keeps_secrets_and_recovers(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    own: Own,
    new_value: ValueFactory,
) -> None:
    failed_before = _failed_syncs(own.operator.metrics(), "VaultUnavailable")
    during = _outage(
        stack,
        kube_api,
        vault_admin,
        own,
        new_value,
        ["frozen-a", "frozen-b"],
        stack.pause_vault,
        stack.resume_vault,
    )
    assert _failed_syncs(own.operator.metrics(), "VaultUnavailable") > failed_before
    # A hung Vault is told apart from an unreachable one (the reads time out after VAULTSYNC_VAULT_TIMEOUT).
    assert any("did not answer in time" in c.get("message", "") for c in during)


def test_vault_sealed_for_30s_keeps_secrets_backs_off_with_jitter_and_recovers(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    own: Own,
    new_value: ValueFactory,
) -> None:
    names = ["sealed-a", "sealed-b", "sealed-c"]
    during = _outage(
        stack, kube_api, vault_admin, own, new_value, names, stack.seal_vault, stack.unseal_vault
    )
    assert any("sealed" in c.get("message", "") for c in during)
    # Retries: exponential from 1 s, with jitter, never beyond the cap (a sealed Vault answers at once, so
    # the gaps between failures are the backoff delays).
    log = own.operator.log_text()
    capped: list[float] = []
    for name in names:
        times = _failures(log, name, "VaultUnavailable")
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(gaps) >= 5, (name, gaps)
        assert gaps[0] < 1.6, gaps  # 1 s +- jitter
        assert max(gaps) <= BACKOFF_MAX + 0.5, gaps  # the cap
        assert max(gaps) >= 3.0, gaps  # it grew
        capped.extend(gaps[3:])  # from the 4th retry on, the delay is at the cap
    assert len(capped) >= 6
    assert max(capped) - min(capped) > 0.2, f"retries at the cap have no jitter: {capped}"


def test_secret_deleted_or_destroyed_in_vault_keeps_the_secret_and_reports_not_found(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    own: Own,
    new_value: ValueFactory,
) -> None:
    namespace = own.namespace
    path = f"e2e/{namespace}/vanishing"
    first = new_value()
    vault_admin.kv_put(path, {"password": first})
    create_vaultsecret(kube_api, namespace, "vanishing", {"path": path, "refreshInterval": "1s"})
    wait_ready(kube_api, namespace, "vanishing")
    snapshot = secret_snapshot(kube_api, namespace, "vanishing")

    vault_admin.kv_delete(path)  # soft delete of the latest version
    deleted = wait_ready(kube_api, namespace, "vanishing", status="False", reason="NotFound", timeout=15)
    assert "deleted" in deleted["message"] and "kept" in deleted["message"]
    assert "last good sync" in deleted["message"]
    assert wait_for_event(kube_api, namespace, "vanishing", "NotFound").type == "Warning"
    mark = time.time()
    wait_for_reads(stack, path, 2, after=mark, timeout=20)  # retried, still failing
    assert secret_snapshot(kube_api, namespace, "vanishing") == snapshot

    # A new version heals it without any manual step on the VaultSecret.
    second = new_value()
    version = vault_admin.kv_put(path, {"password": second})
    wait_ready(kube_api, namespace, "vanishing", timeout=20)
    assert secret_data(kube_api, namespace, "vanishing") == {"password": second.encode()}
    snapshot = secret_snapshot(kube_api, namespace, "vanishing")

    vault_admin.kv_destroy_version(path, [version])
    destroyed = wait_ready(kube_api, namespace, "vanishing", status="False", reason="NotFound", timeout=15)
    assert "destroyed" in destroyed["message"] and "kept" in destroyed["message"]
    assert secret_snapshot(kube_api, namespace, "vanishing") == snapshot

    vault_admin.kv_delete_metadata(path)  # every version and the metadata: a plain 404
    mark = time.time()
    wait_for_reads(stack, path, 3, after=mark, timeout=30)
    condition = ready(kube_api, namespace, "vanishing") or {}
    assert (condition.get("status"), condition.get("reason")) == ("False", "NotFound")
    assert "kept" in condition["message"]
    assert secret_snapshot(kube_api, namespace, "vanishing") == snapshot


def _secret_shape(api: client.ApiClient, namespace: str, name: str) -> tuple[Any, ...]:
    """Everything of a Secret that a restore must bring back (not its uid or resourceVersion); digests of
    the values, so that a failing assertion does not print them."""
    secret = get_secret(api, namespace, name)
    assert secret is not None
    refs = [(r.kind, r.name, r.uid) for r in secret.metadata.owner_references or []]
    digests = {k: hashlib.sha256(str(v).encode()).hexdigest() for k, v in (secret.data or {}).items()}
    return (secret.type, digests, secret.metadata.labels, secret.metadata.annotations, refs)


def test_a_secret_deleted_or_edited_while_vault_is_sealed_is_restored_from_the_last_synced_data(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    own: Own,
    new_value: ValueFactory,
) -> None:
    namespace, name = own.namespace, "cached"
    path = f"e2e/{namespace}/{name}"
    vault_admin.kv_put(path, {"password": new_value(), "user": "app"})
    create_workload(kube_api, namespace, "Deployment", "cached-app")
    spec = {
        "path": path,
        "refreshInterval": "1h",  # only drift makes it sync during the test
        "target": {"labels": {"app": "cached"}, "annotations": {"team": "shop"}},
        "rolloutRestartTargets": [{"kind": "Deployment", "name": "cached-app"}],
    }
    create_vaultsecret(kube_api, namespace, name, spec)
    wait_ready(kube_api, namespace, name)
    synced = _secret_shape(kube_api, namespace, name)
    first = get_secret(kube_api, namespace, name)
    assert first is not None
    core = client.CoreV1Api(kube_api)

    stack.seal_vault()
    try:
        core.delete_namespaced_secret(name, namespace)
        again = wait_for(
            lambda: (
                (s := get_secret(kube_api, namespace, name)) is not None
                and s.metadata.uid != first.metadata.uid
            ),
            timeout=10,
            interval=0.1,
            what="the deleted Secret to be re-created while Vault is sealed",
        )
        assert again
        assert _secret_shape(kube_api, namespace, name) == synced
        event = wait_for_event(kube_api, namespace, name, "DriftRepaired", timeout=10)
        assert event.type == "Normal"
        assert "deleted" in event.message and "last synced data" in event.message
        assert "VaultUnavailable" in event.message
        condition = wait_ready(
            kube_api, namespace, name, status="False", reason="VaultUnavailable", timeout=10
        )
        assert "kept" in condition["message"]

        tampered = base64.b64encode(b"tampered").decode()
        core.patch_namespaced_secret(name, namespace, {"data": {"password": tampered, "extra": tampered}})
        wait_for(
            lambda: _secret_shape(kube_api, namespace, name) == synced,
            timeout=10,
            interval=0.1,
            what="the edited Secret to be restored while Vault is sealed",
        )
        wait_for(
            lambda: any(
                e.reason == "DriftRepaired" and "changed" in e.message
                for e in event_list(kube_api, namespace, name)
            ),
            timeout=10,
            what="a DriftRepaired Event for the edit",
        )
        assert (ready(kube_api, namespace, name) or {}).get("reason") == "VaultUnavailable"
    finally:
        stack.unseal_vault()

    # Vault back: in sync with no rotation and no rollout restart.
    wait_ready(kube_api, namespace, name, timeout=30)
    assert _secret_shape(kube_api, namespace, name) == synced
    assert restarted_at(kube_api, namespace, "Deployment", "cached-app") is None
    assert "Rotated" not in [e.reason for e in event_list(kube_api, namespace, name)]


def test_an_upgrade_from_master_key_macs_rewrites_only_the_status_mac(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    own: Own,
    new_value: ValueFactory,
) -> None:
    """An object synced by an earlier version (status.secretMAC keyed with the master key itself), then the
    operator restarted on this version: no Secret write, no rollout restart, no Rotated Event."""
    namespace, name = own.namespace, "upgraded"
    vault_admin.kv_put(f"e2e/{namespace}/{name}", {"password": new_value()})
    create_workload(kube_api, namespace, "Deployment", "upgraded-app")
    create_vaultsecret(
        kube_api,
        namespace,
        name,
        {
            "path": f"e2e/{namespace}/{name}",
            "refreshInterval": "1h",
            "rolloutRestartTargets": [{"kind": "Deployment", "name": "upgraded-app"}],
        },
    )
    wait_ready(kube_api, namespace, name)
    core = client.CoreV1Api(kube_api)
    master = base64.b64decode(
        core.read_namespaced_secret("vaultsync-hmac-key", OPERATOR_NAMESPACE).data["key"]
    )
    data = secret_data(kube_api, namespace, name) or {}
    vs = get_vaultsecret(kube_api, namespace, name) or {}
    per_object = secret_mac(object_mac_key(master, namespace, vs["metadata"]["uid"]), data)
    assert vs["status"]["secretMAC"] == per_object
    legacy = secret_mac(master, data)

    own.operator.kill()
    try:
        client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": {"secretMAC": legacy}}
        )
        snapshot = secret_snapshot(kube_api, namespace, name)
        mark = time.time()
    finally:
        own.operator.start()
    wait_for(
        lambda: (
            (get_vaultsecret(kube_api, namespace, name) or {}).get("status", {}).get("secretMAC")
            == per_object
        ),
        timeout=60,
        what="the status MAC to be rewritten with the per-object key",
    )
    assert secret_snapshot(kube_api, namespace, name) == snapshot
    writes = [w for w in operator_writes(stack, namespace, since=mark) if w["name"] == name]
    assert writes and all((w["resource"], w["subresource"]) == ("vaultsecrets", "status") for w in writes)
    assert restarted_at(kube_api, namespace, "Deployment", "upgraded-app") is None
    assert "Rotated" not in [e.reason for e in event_list(kube_api, namespace, name)]
    assert (ready(kube_api, namespace, name) or {}).get("status") == "True"
