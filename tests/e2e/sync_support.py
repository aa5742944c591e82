"""Helpers for the sync-engine end-to-end tests: audit logs, workloads, Events, leak checks, own operators."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.conftest import operator_env
from tests.e2e.kube import GROUP, PLURAL, VERSION, get_secret, get_vaultsecret, wait_for
from tests.e2e.operator_process import OperatorProcess
from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack

RESTARTED_AT = "vaultsync.io/restartedAt"


# Audit logs ------------------------------------------------------------------------------------------------
def _parse_time(text: str) -> float:
    """RFC 3339 with up to nanoseconds (Python parses microseconds at most) -> POSIX seconds."""
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(text).timestamp()


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line being written right now
            if isinstance(entry, dict):
                yield entry


def vault_reads(stack: LocalStack, path: str, mount: str = "secret", kv: str = "v2") -> list[float]:
    """Times (POSIX seconds) of the reads of one KV secret that Vault's audit log records, oldest first."""
    api_path = f"{mount}/data/{path}" if kv == "v2" else f"{mount}/{path}"
    times = []
    for entry in _json_lines(stack.vault_audit_log):
        request = entry.get("request") or {}
        if (entry.get("type"), request.get("operation"), request.get("path")) == (
            "request",
            "read",
            api_path,
        ):
            times.append(_parse_time(str(entry["time"])))
    return sorted(times)


def vault_reads_by_path(stack: LocalStack, prefix: str) -> dict[str, list[float]]:
    """Read times of every KV v2 secret under `secret/data/<prefix>`, by path."""
    found: dict[str, list[float]] = {}
    wanted = f"secret/data/{prefix}"
    for entry in _json_lines(stack.vault_audit_log):
        request = entry.get("request") or {}
        path = str(request.get("path") or "")
        if entry.get("type") == "request" and request.get("operation") == "read" and path.startswith(wanted):
            found.setdefault(path.removeprefix("secret/data/"), []).append(_parse_time(str(entry["time"])))
    return {path: sorted(times) for path, times in found.items()}


def wait_for_reads(stack: LocalStack, path: str, count: int, *, after: float, timeout: float = 30.0) -> None:
    """Waits until Vault has served `count` reads of the path since `after` (POSIX seconds)."""
    wait_for(
        lambda: len([t for t in vault_reads(stack, path) if t > after]) >= count,
        timeout=timeout,
        what=f"{count} Vault reads of {path}",
    )


def operator_writes(stack: LocalStack, namespace: str, *, since: float) -> list[dict[str, Any]]:
    """Writes to Secrets and VaultSecrets of a namespace recorded by the kube-apiserver's audit log, made by
    the operator (its aiohttp client; the tests use the kubernetes client) since `since` (POSIX seconds)."""
    writes = []
    for entry in _json_lines(stack.kube_audit_log):
        ref = entry.get("objectRef") or {}
        if ref.get("namespace") != namespace:
            continue
        if entry.get("verb") not in ("create", "update", "patch", "delete"):
            continue
        if "aiohttp" not in str(entry.get("userAgent", "")).lower():
            continue
        if _parse_time(str(entry.get("requestReceivedTimestamp"))) < since:
            continue
        writes.append(
            {
                "verb": entry.get("verb"),
                "resource": ref.get("resource"),
                "subresource": ref.get("subresource"),
                "name": ref.get("name"),
            }
        )
    return writes


# Objects ---------------------------------------------------------------------------------------------------
def resource_versions(
    api: client.ApiClient, namespace: str, names: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """(Secret resourceVersion, VaultSecret resourceVersion) by name."""
    result = {}
    for name in names:
        secret = get_secret(api, namespace, name)
        vs = get_vaultsecret(api, namespace, name) or {}
        result[name] = (
            secret.metadata.resource_version if secret is not None else "",
            vs.get("metadata", {}).get("resourceVersion", ""),
        )
    return result


def pod_template(app: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }


def create_workload(api: client.ApiClient, namespace: str, kind: str, name: str) -> None:
    """A Deployment, StatefulSet or DaemonSet (no kubelet runs, so its pods never start: the object is
    what the tests look at)."""
    apps = client.AppsV1Api(api)
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}, "template": pod_template(name)}
    body = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    if kind == "Deployment":
        apps.create_namespaced_deployment(namespace, body)
    elif kind == "StatefulSet":
        spec["serviceName"] = name
        apps.create_namespaced_stateful_set(namespace, body)
    else:
        apps.create_namespaced_daemon_set(namespace, body)


def read_workload(api: client.ApiClient, namespace: str, kind: str, name: str) -> Any:
    apps = client.AppsV1Api(api)
    read = {
        "Deployment": apps.read_namespaced_deployment,
        "StatefulSet": apps.read_namespaced_stateful_set,
        "DaemonSet": apps.read_namespaced_daemon_set,
    }[kind]
    return read(name, namespace)


def restarted_at(api: client.ApiClient, namespace: str, kind: str, name: str) -> str | None:
    workload = read_workload(api, namespace, kind, name)
    annotations = workload.spec.template.metadata.annotations or {}
    value = annotations.get(RESTARTED_AT)
    return str(value) if value is not None else None


def event_list(api: client.ApiClient, namespace: str, name: str | None = None) -> list[client.CoreV1Event]:
    selector = f"involvedObject.name={name}" if name else None
    core = client.CoreV1Api(api)
    items = core.list_namespaced_event(namespace, field_selector=selector).items
    return list(items)


def reasons(api: client.ApiClient, namespace: str, name: str) -> list[tuple[str, str]]:
    """(type, reason) of the Events on one object, oldest first."""
    events = sorted(event_list(api, namespace, name), key=lambda e: e.metadata.creation_timestamp)
    return [(e.type, e.reason) for e in events]


def wait_for_event(
    api: client.ApiClient, namespace: str, name: str, reason: str, *, timeout: float = 30.0
) -> client.CoreV1Event:
    def check() -> client.CoreV1Event | None:
        return next((e for e in event_list(api, namespace, name) if e.reason == reason), None)

    found: client.CoreV1Event = wait_for(check, timeout=timeout, what=f"Event {reason} on {namespace}/{name}")
    return found


def secret_snapshot(
    api: client.ApiClient, namespace: str, name: str
) -> tuple[str, str, dict[str, str]] | None:
    """(uid, resourceVersion, sha256 of each data value): equal snapshots mean a byte-identical, untouched
    Secret. Digests, so that a failing assertion does not print the values."""
    secret = get_secret(api, namespace, name)
    if secret is None:
        return None
    digests = {k: hashlib.sha256(str(v).encode()).hexdigest() for k, v in (secret.data or {}).items()}
    return (secret.metadata.uid, secret.metadata.resource_version, digests)


# Leak checks -----------------------------------------------------------------------------------------------
def _forms(values: Iterable[str]) -> set[str]:
    forms = set()
    for value in values:
        forms.add(value)
        forms.add(base64.b64encode(value.encode()).decode())
    return forms


def leaks_in(text: str, values: Iterable[str]) -> list[str]:
    """The values (plain or base64) that occur in `text`."""
    return sorted(v for v in _forms(values) if v in text)


def assert_no_leak_in_namespace(api: client.ApiClient, namespace: str, values: Iterable[str]) -> None:
    """No secret value in any Event of the namespace nor in any VaultSecret (status, conditions)."""
    core = client.CoreV1Api(api)
    try:
        events = core.list_namespaced_event(namespace).items
        vaultsecrets = client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL
        )["items"]
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    text = json.dumps([[e.reason, e.message] for e in events]) + json.dumps(vaultsecrets)
    assert leaks_in(text, values) == [], f"secret values in Events or VaultSecrets of {namespace}"


# Operators of a test's own ----------------------------------------------------------------------------------
def private_namespace(api: client.ApiClient, prefix: str = "p") -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    kube_admin.create_namespace(api, name)
    return name


@contextmanager
def own_operator(
    stack: LocalStack, token_file: Path, watch: str, log: Path, **env: str
) -> Iterator[OperatorProcess]:
    """An operator process of the test's own, watching only `watch`; always stopped afterwards."""
    process = OperatorProcess({**operator_env(stack, token_file, watch=watch), **env}, log)
    try:
        process.start()
        yield process
    finally:
        process.stop()
        process.kill()
