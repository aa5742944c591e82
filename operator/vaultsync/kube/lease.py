"""Leader election with a coordination.k8s.io/v1 Lease, so that of several replicas exactly one syncs.

Every replica watches (its view stays warm); only the holder of the Lease runs sync workers. The holder
renews the Lease every `renew_seconds`; a replica takes over a Lease whose renewTime it has seen unchanged
for `lease_seconds` (measured on its own clock, so clock skew between nodes does not matter), or at once
when the holder released it on a graceful shutdown. A holder that cannot renew in time stops syncing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from vaultsync.kube.client import ApiError, KubeClient

logger = logging.getLogger(__name__)


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LostLeadership(Exception):
    """The Lease could not be renewed in time: another replica may be syncing now."""


class LeaderElector:
    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        identity: str,
        *,
        name: str = "vaultsync-leader",
        lease_seconds: float = 15.0,
        renew_seconds: float = 2.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.name = name
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.is_leader = False
        self._observed: tuple[str | None, str | None] = (None, None)
        self._observed_at = 0.0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def _lease(self, previous: dict[str, Any] | None, transitions: int) -> dict[str, Any]:
        now = _micro_time()
        lease: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_seconds),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }
        if previous is not None:
            lease["metadata"]["resourceVersion"] = previous["metadata"]["resourceVersion"]
            spec = previous.get("spec") or {}
            if spec.get("holderIdentity") == self.identity:
                lease["spec"]["acquireTime"] = spec.get("acquireTime", now)
        return lease

    async def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease; True while we hold it."""
        current = await self.kube.request("GET", self.path, ok_missing=True)
        if current is None:
            try:
                await self.kube.request("POST", self.path.rsplit("/", 1)[0], body=self._lease(None, 0))
            except ApiError as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity")
        observed = (holder, spec.get("renewTime"))
        if observed != self._observed:
            self._observed, self._observed_at = observed, time.monotonic()
        expired = time.monotonic() - self._observed_at >= float(
            spec.get("leaseDurationSeconds") or self.lease_seconds
        )
        if holder not in (None, "", self.identity) and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        try:
            await self.kube.request("PUT", self.path, body=self._lease(current, transitions))
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Waits until this replica holds the Lease."""
        logged = False
        while True:
            try:
                if await self.try_acquire():
                    self.is_leader = True
                    logger.info("became the leader (Lease %s/%s)", self.namespace, self.name)
                    return
            except ApiError as exc:
                logger.warning("leader election: %s", exc)
            if not logged:
                logger.info("standing by: another replica holds Lease %s/%s", self.namespace, self.name)
                logged = True
            await asyncio.sleep(self.renew_seconds)

    async def hold(self) -> None:
        """Renews the Lease until cancelled; raises LostLeadership when it could not renew in time."""
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                if await self.try_acquire():
                    last_renewed = time.monotonic()
                    continue
            except ApiError as exc:
                logger.warning("leader election: renewing the Lease failed: %s", exc)
            if time.monotonic() - last_renewed > self.lease_seconds - self.renew_seconds:
                self.is_leader = False
                raise LostLeadership(f"could not renew Lease {self.namespace}/{self.name} in time")

    async def release(self) -> None:
        """Gives the Lease up (on a graceful shutdown) so that a standby takes over at once."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            current = await self.kube.request("GET", self.path, ok_missing=True)
            if current is None or (current.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            current["spec"]["holderIdentity"] = ""
            current["spec"]["leaseDurationSeconds"] = 1
            await self.kube.request("PUT", self.path, body=current)
            logger.info("released the Lease %s/%s", self.namespace, self.name)
        except ApiError as exc:
            logger.warning("could not release the Lease: %s", exc)
