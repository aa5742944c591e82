"""Builds the operator's parts from its settings and runs their background tasks."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vaultsync.core.errors import AUTH_FAILED, SyncError
from vaultsync.core.mac import new_mac_key
from vaultsync.engine.engine import Engine
from vaultsync.health import Heartbeat, start_servers
from vaultsync.kube.client import ApiError, KubeClient
from vaultsync.kube.credentials import connection
from vaultsync.kube.events import EventRecorder
from vaultsync.kube.lease import LeaderElector, LostLeadership
from vaultsync.kube.watch import watch_managed_secrets, watch_vaultsecrets
from vaultsync.metrics import (
    KUBE_ERRORS,
    LEADER,
    QUEUE_DEPTH,
    SERVICE_ACCOUNT_TOKENS,
    SYNCS_RUNNING,
    VAULT_REQUEST_DURATION,
    VAULT_REQUESTS,
    VAULT_TOKENS,
)
from vaultsync.settings import Settings
from vaultsync.vault.client import VaultClient
from vaultsync.vault.identity import (
    Identity,
    ServiceAccountJwts,
    TokenFileJwt,
    TokenRequester,
    VaultSessions,
)
from vaultsync.vault.reader import SecretReader

logger = logging.getLogger("vaultsync")

MAC_KEY_SECRET = "vaultsync-hmac-key"  # noqa: S105 - the name of a Secret, not a secret
SHUTDOWN_GRACE_SECONDS = 10.0
REVOKE_SECONDS = 5.0


def _stop_if_failed(task: asyncio.Task[Any]) -> None:
    """A background task that dies leaves the operator half-working: say so and stop, so that it restarts."""
    if task.cancelled() or task.exception() is None:
        return
    error = task.exception()
    logger.error("background task %s failed (%s): stopping", task.get_name(), type(error).__name__)
    os.kill(os.getpid(), signal.SIGTERM)


class StartupError(RuntimeError):
    """The operator cannot start; the message says what to fix."""


async def ensure_mac_key(kube: KubeClient, namespace: str) -> bytes:
    """The HMAC key for status.secretMAC, kept in a Secret of the operator's namespace (created once)."""
    for _ in range(3):
        secret = await kube.get_secret(namespace, MAC_KEY_SECRET)
        if secret is not None:
            return base64.b64decode((secret.get("data") or {})["key"])
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": MAC_KEY_SECRET,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/name": "vaultsync"},
            },
            "type": "Opaque",
            "data": {"key": base64.b64encode(new_mac_key()).decode()},
        }
        try:
            await kube.create_secret(namespace, body)
        except ApiError as exc:
            if exc.status == 404:
                raise StartupError(
                    f"namespace {namespace} does not exist: create it or set VAULTSYNC_NAMESPACE to the "
                    "operator's namespace"
                ) from None
            if exc.status != 409:
                raise StartupError(
                    f"cannot create the HMAC key Secret {namespace}/{MAC_KEY_SECRET}: {exc}"
                ) from None
    raise StartupError(f"cannot read or create the HMAC key Secret {namespace}/{MAC_KEY_SECRET}")


def _observe_identity(identity: Identity, operation: str, outcome: str, seconds: float) -> None:
    VAULT_REQUESTS.labels(operation, outcome).inc()
    VAULT_REQUEST_DURATION.labels(operation).observe(seconds)


def _observe_read(outcome: str, seconds: float) -> None:
    VAULT_REQUESTS.labels("read", outcome).inc()
    VAULT_REQUEST_DURATION.labels("read").observe(seconds)


def token_requester(kube: KubeClient) -> TokenRequester:
    """ServiceAccount tokens from the TokenRequest API, failures worded as AuthFailed for the user."""

    async def request_token(
        namespace: str, name: str, audience: str | None, seconds: int
    ) -> tuple[str, float]:
        try:
            result = await kube.request_token(namespace, name, [audience] if audience else [], seconds)
        except ApiError as exc:
            if exc.status == 404:
                raise SyncError(
                    AUTH_FAILED,
                    f"ServiceAccount {namespace}/{name} does not exist: create it or fix "
                    "spec.auth.serviceAccountName",
                ) from None
            if exc.status == 403:
                raise SyncError(
                    AUTH_FAILED,
                    "the operator may not request ServiceAccount tokens: its RBAC needs "
                    "'create' on serviceaccounts/token",
                ) from None
            raise
        status = result.get("status", {})
        expires = datetime.fromisoformat(str(status.get("expirationTimestamp")).replace("Z", "+00:00"))
        return str(status["token"]), expires.timestamp()

    return request_token


@dataclass
class Runtime:
    settings: Settings
    kube: KubeClient
    vault: VaultClient
    sessions: VaultSessions
    engine: Engine
    recorder: EventRecorder
    elector: LeaderElector | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    servers: list[Any] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        if not settings.vault_addr:
            raise StartupError(
                "VAULT_ADDR is not set: give the Vault address (e.g. https://vault.vault.svc:8200)"
            )
        kube = KubeClient(connection, on_error=lambda code: KUBE_ERRORS.labels(code).inc())
        try:
            mac_key = await ensure_mac_key(kube, settings.operator_namespace)
            vault = VaultClient(
                settings.vault_addr,
                cacert=settings.vault_cacert,
                namespace=settings.vault_namespace,
                timeout=settings.vault_timeout,
            )
        except ApiError as exc:
            await kube.close()
            raise StartupError(f"cannot reach the Kubernetes API: {exc}") from None
        except SyncError as exc:
            await kube.close()
            raise StartupError(exc.message) from None
        except StartupError:
            await kube.close()
            raise

        sessions = VaultSessions(
            vault,
            TokenFileJwt(settings.token_file),
            ServiceAccountJwts(token_requester(kube), settings.service_account_token_ttl),
            on_request=_observe_identity,
            backoff_base=settings.login_backoff_base,
            backoff_max=settings.login_backoff_max,
        )
        reader = SecretReader(sessions, on_read=_observe_read)
        recorder = EventRecorder(kube)
        engine = Engine(settings, kube, reader, mac_key, recorder)
        try:
            # The render workers start before any sync (the first start launches the fork server).
            await engine.render_pool.start()
        except Exception as exc:
            await kube.close()
            await vault.close()
            raise StartupError(
                f"cannot start the template render workers ({type(exc).__name__}: {exc})"
            ) from None
        runtime = cls(
            settings=settings, kube=kube, vault=vault, sessions=sessions, engine=engine, recorder=recorder
        )
        if settings.leader_election:
            identity = f"{socket.gethostname()}-{os.getpid()}"
            runtime.elector = LeaderElector(kube, settings.operator_namespace, identity)
        runtime._gauges()
        runtime._start_tasks()
        heartbeat = Heartbeat()
        runtime.tasks.append(asyncio.create_task(heartbeat.run(), name="heartbeat"))
        runtime.servers = await start_servers(
            address=settings.listen_address,
            health_port=settings.health_port,
            metrics_port=settings.metrics_port,
            heartbeat=heartbeat,
            ready=engine.secrets_synced.is_set,
            vault_state=vault.health,
        )
        logger.info(
            "vaultsync started: Vault %s, watching %s",
            settings.vault_addr,
            ",".join(settings.watch_namespaces) or "all namespaces",
        )
        return runtime

    def _start_tasks(self) -> None:
        engine = self.engine
        patterns = self.settings.watch_namespaces
        # Plain names get a watch each; glob patterns (kopf-style, e.g. `team-*`) need the cluster-wide one.
        namespaces: list[str | None] = (
            [None] if not patterns or any(set(p) & set("*?[") for p in patterns) else list(patterns)
        )
        synced_all = [asyncio.Event() for _ in namespaces]

        async def all_synced() -> None:
            await asyncio.gather(*(event.wait() for event in synced_all))
            engine.secrets_synced.set()

        for namespace, synced in zip(namespaces, synced_all, strict=True):
            self.tasks.append(
                asyncio.create_task(
                    watch_managed_secrets(
                        self.kube, namespace, self._secret_filter(engine.on_secret), synced
                    ),
                    name="secret-watch",
                )
            )
            # VaultSecrets too are watched here rather than by a kopf handler: kopf runs a worker task and
            # its handler machinery per object and event, which cost a third of the CPU of a first sync.
            self.tasks.append(
                asyncio.create_task(
                    watch_vaultsecrets(
                        self.kube, namespace, self._secret_filter(engine.on_vaultsecret), asyncio.Event()
                    ),
                    name="vaultsecret-watch",
                )
            )
        self.tasks.append(asyncio.create_task(all_synced(), name="secret-watch-synced"))
        self.tasks.append(asyncio.create_task(self._sync(), name="sync"))
        for task in self.tasks:
            task.add_done_callback(_stop_if_failed)
        self.sessions.start_renewing()

    async def _sync(self) -> None:
        """Runs the sync workers: at once, or with leader election once this replica holds the Lease."""
        if self.elector is None:
            await self.engine.run()
            return
        await self.elector.acquire()
        holder = asyncio.create_task(self.elector.hold(), name="lease-holder")
        workers = asyncio.create_task(self.engine.run(), name="sync-workers")
        try:
            await asyncio.wait({holder, workers}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (holder, workers):
                task.cancel()
            await asyncio.gather(holder, workers, return_exceptions=True)
        if holder.done() and not holder.cancelled() and isinstance(holder.exception(), LostLeadership):
            logger.error(
                "lost leadership (%s): stopping so that the other replica syncs alone", holder.exception()
            )
            os.kill(os.getpid(), signal.SIGTERM)

    def _secret_filter(self, handle: Callable[[str | None, Mapping[str, Any]], None]) -> Callable[..., None]:
        patterns = self.settings.watch_namespaces
        if not patterns:
            return handle

        def filtered(event_type: str | None, secret: Mapping[str, Any]) -> None:
            namespace = secret.get("metadata", {}).get("namespace", "")
            if any(fnmatch.fnmatchcase(namespace, pattern) for pattern in patterns):
                handle(event_type, secret)

        return filtered

    def _gauges(self) -> None:
        """Gauges read at scrape time from the live state."""
        sessions, queue, elector = self.sessions, self.engine.queue, self.elector
        VAULT_TOKENS.set_function(lambda: len(sessions))
        SERVICE_ACCOUNT_TOKENS.set_function(lambda: len(sessions.sa_jwts))
        QUEUE_DEPTH.set_function(lambda: len(queue))
        SYNCS_RUNNING.set_function(lambda: queue.active)
        LEADER.set_function(lambda: 1 if elector is None or elector.is_leader else 0)

    async def stop(self) -> None:
        """Lets running syncs finish (bounded), then stops tasks and revokes cached Vault tokens."""
        started = time.monotonic()
        self.engine.stopping = True
        logger.info(
            "stopping: no new syncs; waiting up to %.0fs for %d running",
            SHUTDOWN_GRACE_SECONDS,
            self.engine.queue.active,
        )
        try:
            await asyncio.wait_for(self.engine.queue.wait_idle(), SHUTDOWN_GRACE_SECONDS)
        except TimeoutError:
            logger.warning("syncs still running after %.0fs; stopping them", SHUTDOWN_GRACE_SECONDS)
        self.engine.queue.close()
        if self.elector is not None:
            await self.elector.release()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.recorder.drain()
        await self.engine.render_pool.close()
        try:
            await asyncio.wait_for(self.sessions.close(), REVOKE_SECONDS)
        except TimeoutError:
            logger.warning("Vault did not answer the token revocations within %.0fs", REVOKE_SECONDS)
        for runner in self.servers:
            await runner.cleanup()
        await self.vault.close()
        await self.kube.close()
        logger.info("vaultsync stopped in %.1fs", time.monotonic() - started)
