"""Small helpers the end-to-end tests share: VaultSecret objects, Secrets, polling."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "vaultsync.io", "v1alpha1", "vaultsecrets"
T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.25, what: str = ""
) -> T:
    """Polls `check` until it returns something truthy; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check} (last: {last!r})")


def create_vaultsecret(
    api: client.ApiClient,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VaultSecret",
        "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {})},
        "spec": dict(spec),
    }
    result: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return result


def get_vaultsecret(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return result
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_vaultsecret(api: client.ApiClient, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, patch
    )


def delete_vaultsecret(api: client.ApiClient, namespace: str, name: str) -> None:
    client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def ready(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The Ready condition of a VaultSecret, or None."""
    obj = get_vaultsecret(api, namespace, name) or {}
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


def wait_ready(
    api: client.ApiClient,
    namespace: str,
    name: str,
    *,
    status: str = "True",
    reason: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        condition = ready(api, namespace, name)
        if condition and condition["status"] == status and (reason is None or condition["reason"] == reason):
            return condition
        return None

    return wait_for(check, timeout=timeout, what=f"{namespace}/{name} Ready={status} {reason or ''}")


def get_secret(api: client.ApiClient, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def secret_data(api: client.ApiClient, namespace: str, name: str) -> dict[str, bytes] | None:
    secret = get_secret(api, namespace, name)
    if secret is None:
        return None
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def events_for(api: client.ApiClient, namespace: str, name: str) -> list[client.CoreV1Event]:
    items = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        .items
    )
    return list(items)
