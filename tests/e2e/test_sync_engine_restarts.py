"""Operator restarts (issue 4, behaviour 5): a restart re-verifies every VaultSecret against Vault but writes
nothing and restarts nothing that is already in sync; what changed while it was down converges.

The operator is SIGKILLed (no graceful shutdown) and started again; it is an operator of the test's own,
watching a `p-` namespace.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.conftest import ValueFactory
from tests.e2e.kube import (
    create_vaultsecret,
    get_vaultsecret,
    patch_vaultsecret,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.e2e.sync_support import (
    assert_no_leak_in_namespace,
    create_workload,
    leaks_in,
    operator_writes,
    own_operator,
    private_namespace,
    read_workload,
    resource_versions,
    restarted_at,
    vault_reads_by_path,
    wait_for_event,
)
from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

COUNT = 20


def _syncs(metrics: str, result: str) -> float:
    pattern = re.compile(rf'^vaultsync_syncs_total\{{[^}}]*result="{result}"[^}}]*\}} (\S+)$', re.MULTILINE)
    return sum(float(value) for value in pattern.findall(metrics))


def test_sigkill_and_restart_writes_nothing_for_in_sync_objects_and_converges_the_rest(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
    new_value: ValueFactory,
    secret_values: set[str],
) -> None:
    namespace = private_namespace(kube_api)
    log = tmp_path_factory.mktemp("restarts") / "operator.log"
    names = [f"vs-{i:02d}" for i in range(COUNT)]
    rotated, respecced, edited, deleted = ["vs-01", "vs-02"], "vs-03", "vs-04", "vs-05"
    changed = [*rotated, respecced, edited, deleted]
    in_sync = [n for n in names if n not in changed]
    try:
        for app in ("steady-app", "rotated-app", "drifted-app"):
            create_workload(kube_api, namespace, "Deployment", app)
        for name in names:
            vault_admin.kv_put(f"e2e/{namespace}/{name}", {"user": name, "password": new_value()})
        with own_operator(stack, operator_token_file, namespace, log) as process:
            for name in names:
                spec: dict[str, object] = {"path": f"e2e/{namespace}/{name}", "refreshInterval": "1h"}
                if name == "vs-00":
                    spec["rolloutRestartTargets"] = [{"kind": "Deployment", "name": "steady-app"}]
                if name == "vs-01":
                    spec["rolloutRestartTargets"] = [{"kind": "Deployment", "name": "rotated-app"}]
                if name == edited:
                    spec["rolloutRestartTargets"] = [{"kind": "Deployment", "name": "drifted-app"}]
                create_vaultsecret(kube_api, namespace, name, spec)
            for name in names:
                wait_ready(kube_api, namespace, name, timeout=60)
            before = resource_versions(kube_api, namespace, names)
            steady_generation = read_workload(
                kube_api, namespace, "Deployment", "steady-app"
            ).metadata.generation

            process.kill()  # SIGKILL: no chance to tidy up
            new_passwords = {name: new_value() for name in rotated}
            for name in rotated:
                vault_admin.kv_put(f"e2e/{namespace}/{name}", {"user": name, "password": new_passwords[name]})
            patch_vaultsecret(kube_api, namespace, respecced, {"spec": {"keys": ["user"]}})
            # Secrets edited and deleted by hand while nobody watched: repaired on restart, no rollout.
            core = client.CoreV1Api(kube_api)
            kept = {name: secret_data(kube_api, namespace, name) for name in (edited, deleted)}
            core.patch_namespaced_secret(edited, namespace, {"data": {"password": "dGFtcGVyZWQ="}})
            core.delete_namespaced_secret(deleted, namespace)

            restarted = time.time()
            process.start()
            # Every VaultSecret is re-verified against Vault: one completed sync each, 17 of them unchanged.
            wait_for(
                lambda: sum(_syncs(process.metrics(), r) for r in ("unchanged", "synced", "failed")) >= COUNT,
                timeout=60,
                what="every VaultSecret to be re-verified",
            )
            metrics = process.metrics()
            counts = {r: _syncs(metrics, r) for r in ("unchanged", "synced", "failed")}
            assert counts == {"unchanged": len(in_sync), "synced": len(changed), "failed": 0}
            reads = vault_reads_by_path(stack, f"e2e/{namespace}/")
            assert all(any(t >= restarted for t in reads[f"e2e/{namespace}/{n}"]) for n in names)
            # What changed while the operator was down converges.
            for name in rotated:
                wait_for(
                    lambda n=name: (
                        secret_data(kube_api, namespace, n)  # type: ignore[misc]
                        == {"user": n.encode(), "password": new_passwords[n].encode()}
                    ),
                    timeout=30,
                    what=f"{name} to converge",
                )
            wait_for(
                lambda: secret_data(kube_api, namespace, respecced) == {"user": respecced.encode()},
                timeout=30,
                what=f"{respecced} to follow its new spec",
            )
            for name in (edited, deleted):
                assert secret_data(kube_api, namespace, name) == kept[name]
                wait_for_event(kube_api, namespace, name, "DriftRepaired", timeout=10)
            vs = get_vaultsecret(kube_api, namespace, respecced) or {}
            assert vs["status"]["observedGeneration"] == vs["metadata"]["generation"] == 2
            # Nothing in sync was written: neither the Secrets nor the VaultSecrets (status) moved ...
            after = resource_versions(kube_api, namespace, in_sync)
            assert after == {name: before[name] for name in in_sync}
            writes = operator_writes(stack, namespace, since=restarted)
            assert [w for w in writes if w["name"] in in_sync] == []
            # ... the only writes were for those that changed ...
            assert {w["name"] for w in writes} == set(changed)
            # ... and nothing in sync was restarted, while the rotated Secret's Deployment was.
            assert restarted_at(kube_api, namespace, "Deployment", "steady-app") is None
            assert restarted_at(kube_api, namespace, "Deployment", "drifted-app") is None
            steady = read_workload(kube_api, namespace, "Deployment", "steady-app")
            assert steady.metadata.generation == steady_generation
            wait_for(
                lambda: restarted_at(kube_api, namespace, "Deployment", "rotated-app"),
                timeout=10,
                what="the rotated Secret's Deployment to be restarted",
            )
        assert leaks_in(process.log_text(), secret_values) == []
        assert_no_leak_in_namespace(kube_api, namespace, secret_values)
    finally:
        kube_admin.delete_namespace(kube_api, namespace)
