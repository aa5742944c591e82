"""Prometheus metrics, scraped from the real /metrics endpoint of a real operator while it syncs.

The operator is one of the test's own (namespace `p-...`), so that every figure is exact: nothing else moves
its counters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.kube import (
    create_vaultsecret,
    delete_vaultsecret,
    patch_vaultsecret,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import Sample, assert_no_values, parse_metrics, value
from vaultsync import __version__
from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

REASONS = {
    "Synced",
    "VaultUnavailable",
    "AuthFailed",
    "PermissionDenied",
    "NotFound",
    "TemplateError",
    "KeyConflict",
    "TargetConflict",
    "InvalidSpec",
    "InvalidData",
    "KubernetesError",
    "InternalError",
}
# Every label a vaultsync metric may carry, and the values each may take: bounded sets, never an object.
ALLOWED_LABELS: dict[str, re.Pattern[str]] = {
    "result": re.compile(r"synced|unchanged|failed|ok"),
    "reason": re.compile("|".join(sorted(REASONS))),
    "operation": re.compile(r"login|renew|read"),
    "outcome": re.compile(r"ok|denied|not_found|unavailable|error"),
    "ready": re.compile(r"True|False|Unknown"),
    "kind": re.compile(r"secret|status|event|workload|vaultsecret"),
    "code": re.compile(r"[1-5][0-9][0-9]|unreachable"),
    "version": re.compile(re.escape(__version__)),
    "le": re.compile(r"[0-9.e+]+|\+Inf"),
}


@pytest.fixture
def metrics_operator(
    stack: LocalStack, operator_token_file: Path, own: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(operator_env(stack, operator_token_file, watch=own), tmp_path / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def scrape(operator: OperatorProcess) -> list[Sample]:
    return parse_metrics(operator.metrics())


def wait_metric(operator: OperatorProcess, name: str, expected: float, **labels: str) -> list[Sample]:
    """Polls the endpoint until the metric reaches `expected` (gauges and counters move asynchronously)."""

    def check() -> list[Sample] | None:
        samples = scrape(operator)
        return samples if value(samples, name, **labels) == expected else None

    found: list[Sample] = wait_for(check, timeout=30, what=f"{name}{labels} == {expected}")
    return found


def create_deployment(api: client.ApiClient, namespace: str, name: str) -> None:
    template = {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": template},
    }
    client.AppsV1Api(api).create_namespaced_deployment(namespace, body)


def test_metrics_move_with_what_the_operator_does(
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    own: str,
    metrics_operator: OperatorProcess,
    new_value: ValueFactory,
    secret_values: set[str],
) -> None:
    operator = metrics_operator
    start = scrape(operator)
    assert value(start, "vaultsync_build_info", version=__version__) == 1
    assert value(start, "vaultsync_leader") == 1  # leader election off: this replica syncs
    assert value(start, "vaultsync_vault_tokens_cached") == 0
    assert value(start, "vaultsync_syncs_total") == 0
    for ready in ("True", "False", "Unknown"):
        assert value(start, "vaultsync_vaultsecrets", ready=ready) == 0

    # A first sync: one login (the operator's own identity), one read, one Secret created.
    first, second = new_value(), new_value()
    vault_admin.kv_put(f"e2e/{own}/app", {"password": first})
    create_deployment(kube_api, own, "web")
    create_vaultsecret(
        kube_api,
        own,
        "app",
        {
            "path": f"e2e/{own}/app",
            "rolloutRestartTargets": [
                {"kind": "Deployment", "name": "web"},
                {"kind": "Deployment", "name": "gone"},
            ],
        },
    )
    wait_ready(kube_api, own, "app")
    synced = wait_metric(operator, "vaultsync_vaultsecrets", 1, ready="True")
    assert value(synced, "vaultsync_syncs_total", result="synced", reason="Synced") == 1
    assert value(synced, "vaultsync_syncs_total", result="failed") == 0
    assert value(synced, "vaultsync_sync_duration_seconds_count") >= 1
    assert value(synced, "vaultsync_vault_requests_total", operation="login", outcome="ok") == 1
    assert value(synced, "vaultsync_vault_requests_total", operation="read", outcome="ok") == 1
    assert value(synced, "vaultsync_vault_request_duration_seconds_count", operation="login") == 1
    assert value(synced, "vaultsync_vault_request_duration_seconds_count", operation="read") == 1
    assert value(synced, "vaultsync_vault_tokens_cached") == 1
    assert value(synced, "vaultsync_serviceaccount_tokens_cached") == 0
    assert value(synced, "vaultsync_kubernetes_writes_total", kind="secret") == 1
    assert value(synced, "vaultsync_kubernetes_writes_total", kind="status") >= 1
    assert value(synced, "vaultsync_rollout_restarts_total") == 0  # never on the first sync

    # Failures count by reason: a path Vault does not have, a path the policy does not allow.
    create_vaultsecret(kube_api, own, "missing", {"path": f"e2e/{own}/missing"})
    create_vaultsecret(kube_api, own, "forbidden", {"path": f"elsewhere/{own}/app"})
    wait_ready(kube_api, own, "missing", status="False", reason="NotFound")
    wait_ready(kube_api, own, "forbidden", status="False", reason="PermissionDenied")
    failed = wait_metric(operator, "vaultsync_vaultsecrets", 2, ready="False")
    assert value(failed, "vaultsync_vaultsecrets", ready="True") == 1
    assert value(failed, "vaultsync_syncs_total", result="failed", reason="NotFound") >= 1
    assert value(failed, "vaultsync_syncs_total", result="failed", reason="PermissionDenied") >= 1
    assert value(failed, "vaultsync_vault_requests_total", operation="read", outcome="not_found") >= 1
    assert value(failed, "vaultsync_vault_requests_total", operation="read", outcome="denied") >= 1
    # Still one login: tokens are cached per identity, not per sync.
    assert value(failed, "vaultsync_vault_requests_total", operation="login") == 1

    # A rotation restarts the workloads: one restart, one failure (the Deployment "gone" does not exist,
    # which is also a Kubernetes API error 404).
    vault_admin.kv_put(f"e2e/{own}/app", {"password": second})
    patch_vaultsecret(kube_api, own, "app", {"metadata": {"annotations": {"vaultsync.io/refresh": "1"}}})
    wait_for(lambda: secret_data(kube_api, own, "app") == {"password": second.encode()}, what="rotation")
    rotated = wait_metric(operator, "vaultsync_rollout_restarts_total", 1, result="failed")
    assert value(rotated, "vaultsync_rollout_restarts_total", result="ok") == 1
    assert value(rotated, "vaultsync_kubernetes_api_errors_total", code="404") >= 1
    assert value(rotated, "vaultsync_syncs_total", result="synced", reason="Synced") == 2

    # Drift: a Secret deleted by hand is restored, and counted.
    client.CoreV1Api(kube_api).delete_namespaced_secret("app", own)
    wait_for(lambda: secret_data(kube_api, own, "app") == {"password": second.encode()}, what="restore")
    repaired = wait_metric(operator, "vaultsync_drift_repairs_total", 1)
    assert value(repaired, "vaultsync_syncs_total", result="synced", reason="Synced") == 3

    # A deleted VaultSecret leaves the gauge.
    delete_vaultsecret(kube_api, own, "missing")
    after_delete = wait_metric(operator, "vaultsync_vaultsecrets", 1, ready="False")
    assert value(after_delete, "vaultsync_vaultsecrets", ready="True") == 1

    # A namespace ServiceAccount's identity: a second cached Vault token, a cached ServiceAccount token, and
    # renewals (the role's tokens live 24 s: renewed at 2/3 of that); refreshes that find nothing changed
    # count as "unchanged".
    kube_admin.create_service_account(kube_api, own, "reader")
    vault_admin.write_policy(
        f"metrics-{own}", f'path "secret/data/e2e/{own}/*" {{ capabilities = ["read"] }}\n'
    )
    vault_admin.kubernetes_role(f"metrics-{own}", ["reader"], [own], [f"metrics-{own}"], ttl="24s")
    create_vaultsecret(
        kube_api,
        own,
        "as-reader",
        {
            "path": f"e2e/{own}/app",
            "refreshInterval": "2s",
            "auth": {"serviceAccountName": "reader", "role": f"metrics-{own}"},
        },
    )
    wait_ready(kube_api, own, "as-reader")
    renewed = wait_for(
        lambda: (
            (samples := scrape(operator))
            and value(samples, "vaultsync_vault_requests_total", operation="renew", outcome="ok") >= 1
            and samples
        ),
        timeout=60,
        what="a token renewal",
    )
    assert value(renewed, "vaultsync_vault_request_duration_seconds_count", operation="renew") >= 1
    assert value(renewed, "vaultsync_vault_tokens_cached") == 2
    assert value(renewed, "vaultsync_serviceaccount_tokens_cached") == 1
    assert value(renewed, "vaultsync_vault_requests_total", operation="login", outcome="ok") == 2
    assert value(renewed, "vaultsync_syncs_total", result="unchanged", reason="Synced") >= 1

    # Bounded labels: no namespace, no object name, no value; only the known label names and values.
    text = operator.metrics()
    assert own not in text
    assert_no_values(text, secret_values, "the metrics")
    for sample in parse_metrics(text):
        for label_value in sample.labels.values():
            names = {"app", "missing", "forbidden", "web", "gone", "as-reader", "reader"}
            assert not names & set(re.split(r"[/.:]", label_value))
        if not sample.name.startswith("vaultsync_"):
            continue
        for label, label_value in sample.labels.items():
            assert label in ALLOWED_LABELS, (sample.name, label)
            assert ALLOWED_LABELS[label].fullmatch(label_value), (sample.name, label, label_value)
