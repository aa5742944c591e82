"""Kubernetes Events on VaultSecrets, with stable reasons. Messages never hold secret values."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from typing import Any

from vaultsync.core.status import now_rfc3339
from vaultsync.kube.client import ApiError, KubeClient
from vaultsync.metrics import KUBE_WRITES

logger = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"

# Stable Event reasons (conditions' failure reasons are used as Event reasons too).
SYNCED = "Synced"
ROTATED = "Rotated"
DRIFT_REPAIRED = "DriftRepaired"
ROLLOUT_RESTARTED = "RolloutRestarted"
ROLLOUT_RESTART_FAILED = "RolloutRestartFailed"
TARGET_RENAMED = "TargetRenamed"
SECRET_REPLACED = "SecretReplaced"  # noqa: S105 - an Event reason


class EventRecorder:
    """Posts Events in the background so that a slow Events API never delays a sync."""

    def __init__(self, kube: KubeClient, *, max_in_flight: int = 16) -> None:
        self.kube = kube
        self.instance = socket.gethostname()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    def post(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        task = asyncio.create_task(self._post(obj, event_type, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace", "default")
        now = now_rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'vaultsecret')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", "vaultsync.io/v1alpha1"),
                "kind": obj.get("kind", "VaultSecret"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "vaultsync"},
            "reportingComponent": "vaultsync",
            "reportingInstance": self.instance,
        }
        async with self._slots:
            try:
                await self.kube.create_event(namespace, event)
                KUBE_WRITES.labels("event").inc()
            except ApiError as exc:
                logger.debug("could not post Event %s on %s/%s: %s", reason, namespace, meta.get("name"), exc)

    async def drain(self, seconds: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=seconds)
