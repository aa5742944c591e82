"""List-then-watch of the Secrets the operator manages, selected by label on the server side.

Only Secrets labelled `app.kubernetes.io/managed-by=vaultsync` are listed and watched, so the operator never
streams the cluster's other Secrets. The first complete listing sets `synced`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from vaultsync.core.desired import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from vaultsync.kube.client import ApiError, KubeClient, WatchExpired

logger = logging.getLogger(__name__)

SecretHandler = Callable[[str | None, Mapping[str, Any]], None]
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


async def watch_managed_secrets(
    kube: KubeClient, namespace: str | None, handle: SecretHandler, synced: asyncio.Event
) -> None:
    """Runs until cancelled: lists, then watches from the list's resourceVersion; relists after 410 Gone."""
    path = f"/api/v1/namespaces/{namespace}/secrets" if namespace else "/api/v1/secrets"
    known: dict[tuple[str, str], str] = {}
    delay = 1.0
    while True:
        try:
            version = await _list(kube, path, handle, known)
            synced.set()
            delay = 1.0
            while True:
                params = {"labelSelector": SELECTOR, "resourceVersion": version, "timeoutSeconds": "300"}
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
            logger.warning("watch of managed Secrets failed (%s); retrying in %.0fs", exc, delay)
        except Exception as exc:
            # Never let one odd event end drift repair for good: list again from scratch.
            logger.error(
                "watch of managed Secrets broke (%s); listing again in %.0fs", type(exc).__name__, delay
            )
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, 30.0)


async def _list(kube: KubeClient, path: str, handle: SecretHandler, known: dict[tuple[str, str], str]) -> str:
    seen: set[tuple[str, str]] = set()
    params = {"labelSelector": SELECTOR, "limit": "500"}
    while True:
        page = await kube.list_page(path, params)
        for item in page.get("items", []):
            meta = item.get("metadata", {})
            key = (meta.get("namespace", ""), meta.get("name", ""))
            seen.add(key)
            if known.get(key) != meta.get("resourceVersion"):
                known[key] = meta.get("resourceVersion", "")
                item.setdefault("apiVersion", "v1")
                item.setdefault("kind", "Secret")
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
