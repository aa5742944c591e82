"""Prometheus metrics. Labels are bounded sets (results, reasons, operations): never a per-object label."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from vaultsync import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds, ... (Linux /proc).
ProcessCollector(registry=REGISTRY)

SYNCS = Counter(
    "vaultsync_syncs_total",
    "Syncs of VaultSecrets by result (synced, unchanged, failed) and condition reason.",
    ["result", "reason"],
    registry=REGISTRY,
)
SYNC_DURATION = Histogram(
    "vaultsync_sync_duration_seconds",
    "Time of one sync of a VaultSecret: Vault reads, shaping and Kubernetes writes.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
VAULT_REQUESTS = Counter(
    "vaultsync_vault_requests_total",
    "Requests to Vault by operation (login, renew, read) and outcome (ok, denied, not_found, unavailable, "
    "error).",
    ["operation", "outcome"],
    registry=REGISTRY,
)
VAULT_REQUEST_DURATION = Histogram(
    "vaultsync_vault_request_duration_seconds",
    "Latency of Vault requests by operation (login, renew, read), whatever their outcome.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    registry=REGISTRY,
)
VAULT_TOKENS = Gauge(
    "vaultsync_vault_tokens_cached",
    "Vault tokens held in the cache: one per identity in use (the operator's own, and each "
    "namespace ServiceAccount that VaultSecrets log in as).",
    registry=REGISTRY,
)
SERVICE_ACCOUNT_TOKENS = Gauge(
    "vaultsync_serviceaccount_tokens_cached",
    "Kubernetes ServiceAccount tokens (TokenRequest API) held for spec.auth.serviceAccountName logins.",
    registry=REGISTRY,
)
VAULTSECRETS = Gauge(
    "vaultsync_vaultsecrets",
    "VaultSecrets known to the operator by Ready state.",
    ["ready"],
    registry=REGISTRY,
)
DRIFT_REPAIRS = Counter(
    "vaultsync_drift_repairs_total",
    "Secrets restored after being edited or deleted by hand.",
    registry=REGISTRY,
)
ROLLOUT_RESTARTS = Counter(
    "vaultsync_rollout_restarts_total",
    "Rollout restarts of Deployments, StatefulSets and DaemonSets by result (ok, failed).",
    ["result"],
    registry=REGISTRY,
)
KUBE_WRITES = Counter(
    "vaultsync_kubernetes_writes_total",
    "Writes to the Kubernetes API by object kind (secret, status, vaultsecret, event, workload).",
    ["kind"],
    registry=REGISTRY,
)
KUBE_ERRORS = Counter(
    "vaultsync_kubernetes_api_errors_total",
    "Failed Kubernetes API requests by HTTP status (or 'unreachable').",
    ["code"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("vaultsync_queue_depth", "VaultSecrets waiting for a sync worker.", registry=REGISTRY)
SYNCS_RUNNING = Gauge("vaultsync_syncs_running", "Syncs in progress right now.", registry=REGISTRY)
LEADER = Gauge(
    "vaultsync_leader",
    "1 when this replica runs the sync workers (it holds the leader Lease, or leader election is off); "
    "0 on a standby.",
    registry=REGISTRY,
)
BUILD_INFO = Info("vaultsync_build", "Version of the running operator.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})
