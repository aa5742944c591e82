"""List-then-watch of VaultSecrets and of the Secrets the operator manages (by label, on the server side).

Only Secrets labelled `app.kubernetes.io/managed-by=vaultsync` are listed and watched, so the operator never
streams the cluster's other Secrets. The first complete listing sets `synced`.

kopf runs the operator's lifecycle (startup, cleanup, signals); the watches of the hot path are these, not
kopf resource handlers: kopf's worker task and handler machinery per object and event were a quarter to a
third of the operator's CPU in a first sync of thousands of VaultSecrets (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Callable, Mapping
from typing import Any

from vaultsync.core.desired import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from vaultsync.kube.client import GROUP, PLURAL, VERSION, ApiError, KubeClient, WatchExpired

logger = logging.getLogger(__name__)

SecretHandler = Callable[[str | None, Mapping[str, Any]], None]
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without managedFields, its dict keys shared with every other object's (interned): the
    engine keeps every managed Secret and VaultSecret, and json.loads makes new key strings per event."""
    obj.get("metadata", {}).pop("managedFields", None)
    stripped: dict[str, Any] = _interned(obj)
    return stripped


def _interned(value: Any) -> Any:
    if isinstance(value, dict):
        return {sys.intern(key): _interned(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interned(item) for item in value]
    return value


async def watch_managed_secrets(
    kube: KubeClient, namespace: str | None, handle: SecretHandler, synced: asyncio.Event
) -> None:
    """The Secrets labelled as ours, of one namespace or of all (``None``)."""
    path = f"/api/v1/namespaces/{namespace}/secrets" if namespace else "/api/v1/secrets"
    await list_watch(kube, path, handle, synced, "managed Secrets", ("v1", "Secret"), selector=SELECTOR)


async def watch_vaultsecrets(
    kube: KubeClient, namespace: str | None, handle: SecretHandler, synced: asyncio.Event
) -> None:
    """The VaultSecrets of one namespace or of all (``None``)."""
    base = f"/apis/{GROUP}/{VERSION}"
    path = f"{base}/namespaces/{namespace}/{PLURAL}" if namespace else f"{base}/{PLURAL}"
    await list_watch(kube, path, handle, synced, "VaultSecrets", (f"{GROUP}/{VERSION}", "VaultSecret"))


async def list_watch(
    kube: KubeClient,
    path: str,
    handle: SecretHandler,
    synced: asyncio.Event,
    what: str,
    kind: tuple[str, str],
    *,
    selector: str | None = None,
) -> None:
    """Runs until cancelled: lists, then watches from the list's resourceVersion; relists after 410 Gone.

    Calls ``handle(None, obj)`` for each listed object, ``handle(type, obj)`` for each watch event, and
    ``handle("DELETED", {"metadata": {namespace, name}})`` for an object that a relist no longer shows."""
    known: dict[tuple[str, str], str] = {}
    delay = 1.0
    while True:
        try:
            version = await _list(kube, path, handle, known, kind, selector)
            synced.set()
            delay = 1.0
            while True:
                params = {"resourceVersion": version, "timeoutSeconds": "300"}
                if selector:
                    params["labelSelector"] = selector
                async for event in kube.watch(path, params):
                    obj = event.get("object", {})
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event.get("type") == "BOOKMARK":
                        continue
                    meta = obj.get("metadata", {})
                    key = (meta.get("namespace", ""), meta.get("name", ""))
                    if event.get("type") == "DELETED":
                        known.pop(key, None)
                    else:
                        known[key] = meta.get("resourceVersion", "")
                    handle(event.get("type"), _strip(obj))
        except asyncio.CancelledError:
            raise
        except WatchExpired:
            continue
        except ApiError as exc:
            logger.warning("watch of %s failed (%s); retrying in %.0fs", what, exc, delay)
        except Exception as exc:
            # Never let one odd event end drift repair for good: list again from scratch.
            logger.error("watch of %s broke (%s); listing again in %.0fs", what, type(exc).__name__, delay)
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, 30.0)


async def _list(
    kube: KubeClient,
    path: str,
    handle: SecretHandler,
    known: dict[tuple[str, str], str],
    kind: tuple[str, str],
    selector: str | None,
) -> str:
    seen: set[tuple[str, str]] = set()
    params = {"limit": "500"}
    if selector:
        params["labelSelector"] = selector
    while True:
        page = await kube.list_page(path, params)
        for item in page.get("items", []):
            meta = item.get("metadata", {})
            key = (meta.get("namespace", ""), meta.get("name", ""))
            seen.add(key)
            if known.get(key) != meta.get("resourceVersion"):
                known[key] = meta.get("resourceVersion", "")
                item.setdefault("apiVersion", kind[0])
                item.setdefault("kind", kind[1])
                handle(None, _strip(item))
        token = page.get("metadata", {}).get("continue")
        if not token:
            version: str = page.get("metadata", {}).get("resourceVersion", "")
            break
        params = {**params, "continue": token}
    for key in set(known) - seen:
        del known[key]
        handle("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}})
    return version
