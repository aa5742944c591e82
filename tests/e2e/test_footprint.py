"""Memory of a real operator with 100 VaultSecrets, against the Deployment's memory request and limit
(deploy/base/deployment.yaml); the figures feed those numbers."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from kubernetes import client

from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.kube import GROUP, PLURAL, VERSION, create_vaultsecret, wait_for
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import own_namespace, parse_metrics, rss_bytes, value
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

COUNT = 100
MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _quantity_bytes(text: str) -> int:
    units = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


def deployment_memory() -> tuple[int, int]:
    deployment = yaml.safe_load((REPO / "deploy" / "base" / "deployment.yaml").read_text())
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    return _quantity_bytes(resources["requests"]["memory"]), _quantity_bytes(resources["limits"]["memory"])


def ready_count(api: client.ApiClient, namespace: str) -> int:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
        "items"
    ]
    return sum(
        1
        for item in items
        for c in (item.get("status") or {}).get("conditions") or []
        if c.get("type") == "Ready" and c.get("status") == "True"
    )


def test_memory_with_100_vaultsecrets(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    tmp_path: Path,
    new_value: ValueFactory,
) -> None:
    with own_namespace(kube_api) as namespace:
        env = {**operator_env(stack, operator_token_file, watch=namespace), "VAULTSYNC_LOG_LEVEL": "INFO"}
        process = OperatorProcess(env, tmp_path / "operator.log")
        process.start()
        try:
            assert process.process is not None
            idle_rss, _ = rss_bytes(process.process.pid)
            for index in range(COUNT):
                path = f"e2e/{namespace}/app-{index}"
                vault_admin.kv_put(path, {"username": f"user-{index}", "password": new_value()})
                create_vaultsecret(
                    kube_api, namespace, f"app-{index}", {"path": path, "refreshInterval": "30s"}
                )
            started = time.monotonic()
            wait_for(
                lambda: ready_count(kube_api, namespace) == COUNT, timeout=180, interval=1, what="all Ready"
            )
            synced_in = time.monotonic() - started
            rss, peak = rss_bytes(process.process.pid)
            reported = value(parse_metrics(process.metrics()), "process_resident_memory_bytes")
        finally:
            assert process.stop() == 0
    request, limit = deployment_memory()
    print(
        f"\noperator RSS: idle {idle_rss / MIB:.1f} MiB; with {COUNT} VaultSecrets {rss / MIB:.1f} MiB "
        f"(peak {peak / MIB:.1f} MiB); all Ready {synced_in:.1f}s after the last create; "
        f"Deployment request {request // MIB}Mi, limit {limit // MIB}Mi"
    )
    # The metric reports the same process memory (within what a scrape apart can move).
    assert abs(reported - rss) < 16 * MIB
    # The request covers what it uses, the limit leaves headroom for growth and bursts.
    assert peak < request
    assert peak * 2 <= limit
