"""Helpers for the operations tests (metrics, probes, HA, shutdown, logs, doctor): own namespaces, metric
scrapes, the kube-apiserver's audit log and kubeconfigs of ServiceAccounts (one Kubernetes user per
operator process, so that the audit log tells which process wrote what)."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack

# Namespaces ---------------------------------------------------------------------------------------


@contextmanager
def own_namespace(kube_api: client.ApiClient, prefix: str = "p") -> Iterator[str]:
    """A fresh `p-<random>` namespace for an operator of the test's own (never the shared `t-*` one)."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    kube_admin.create_namespace(kube_api, name)
    try:
        yield name
    finally:
        kube_admin.delete_namespace(kube_api, name)


# Metrics ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    return [
        Sample(sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


# HTTP ---------------------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http://127.0.0.1 only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# The kube-apiserver audit log ---------------------------------------------------------------------


def parse_time(text: str) -> float:
    """RFC 3339 with up to nanoseconds -> POSIX seconds."""
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    return datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True)
class Write:
    user: str
    verb: str
    resource: str
    subresource: str | None
    name: str | None
    at: float


def kube_writes(stack: LocalStack, namespace: str, *, since: float = 0.0) -> list[Write]:
    """Successful writes (create/update/patch/delete) to Secrets and VaultSecrets of one namespace that the
    API server's audit log recorded (Metadata level: user, verb, objectRef), oldest first."""
    writes = []
    if not stack.kube_audit_log.exists():
        return writes
    with stack.kube_audit_log.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line being written
            ref = entry.get("objectRef") or {}
            if ref.get("namespace") != namespace or entry.get("verb") not in (
                "create",
                "update",
                "patch",
                "delete",
            ):
                continue
            if int((entry.get("responseStatus") or {}).get("code", 0)) >= 300:
                continue
            at = parse_time(str(entry.get("requestReceivedTimestamp")))
            if at < since:
                continue
            writes.append(
                Write(
                    user=str((entry.get("user") or {}).get("username")),
                    verb=str(entry.get("verb")),
                    resource=str(ref.get("resource")),
                    subresource=ref.get("subresource"),
                    name=ref.get("name"),
                    at=at,
                )
            )
    return sorted(writes, key=lambda w: w.at)


# Kubernetes users for operator processes ----------------------------------------------------------


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def service_account_kubeconfig(
    stack: LocalStack, kube_api: client.ApiClient, namespace: str, name: str, path: Path
) -> Path:
    """A kubeconfig authenticating as ServiceAccount namespace/name (token from the TokenRequest API)."""
    kube_admin.create_service_account(kube_api, namespace, name)
    token = kube_admin.request_token(kube_api, namespace, name, expiration_seconds=3600)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": stack.api_url, "certificate-authority": str(stack.ca_cert)},
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": name}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def bind_cluster_role(kube_api: client.ApiClient, binding: str, role: str, namespace: str, name: str) -> None:
    """ClusterRoleBinding `binding` of ClusterRole `role` to ServiceAccount namespace/name."""
    body = client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=binding),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)],
    )
    try:
        client.RbacAuthorizationV1Api(kube_api).create_cluster_role_binding(body)
    except ApiException as exc:
        if exc.status != 409:
            raise


def delete_cluster_objects(
    kube_api: client.ApiClient, bindings: Sequence[str], roles: Sequence[str] = ()
) -> None:
    rbac = client.RbacAuthorizationV1Api(kube_api)
    for binding in bindings:
        try:
            rbac.delete_cluster_role_binding(binding)
        except ApiException as exc:
            if exc.status != 404:
                raise
    for role in roles:
        try:
            rbac.delete_cluster_role(role)
        except ApiException as exc:
            if exc.status != 404:
                raise


def lease_holder(kube_api: client.ApiClient, namespace: str, name: str = "vaultsync-leader") -> str | None:
    try:
        lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return lease.spec.holder_identity or None


def rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in bytes."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def assert_no_values(text: str, values: set[str], what: str) -> None:
    leaked = sorted(v for v in values if v in text)
    assert not leaked, f"secret values appear in {what}: {len(leaked)} of them"
