"""The sync engine: level-based reconciliation of VaultSecrets into Secrets.

kopf delivers VaultSecret events and the Secret watcher delivers managed-Secret events; both only update the
in-memory view and queue keys. Workers take keys from the queue and reconcile: read Vault as the right
identity, shape the Secret, compare it with what is there (HMAC, no plaintext hashes) and write only what
differs. Failures keep the existing Secret untouched and are retried with backoff and jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync.core.desired import (
    DesiredSecret,
    Owner,
    build_secret,
    check_ownership,
    desired_secret,
    is_up_to_date,
    last_synced_desired,
    our_data,
    owner_of,
    without_our_keys,
)
from vaultsync.core.errors import (
    AUTH_FAILED,
    INVALID_DATA,
    INVALID_SPEC,
    KEY_CONFLICT,
    PERMISSION_DENIED,
    SYNCED,
    TEMPLATE_ERROR,
    VAULT_UNAVAILABLE,
    SyncError,
)
from vaultsync.core.mac import mac_matches, object_mac_key, secret_mac
from vaultsync.core.shaping import SourceData, shape_secret
from vaultsync.core.spec import AuthSpec, VaultSecretSpec, parse_spec
from vaultsync.core.status import current_ready, now_rfc3339, ready_condition, status_patch
from vaultsync.core.templates import CompiledTemplates
from vaultsync.engine.cache import SecretCache
from vaultsync.engine.queue import WorkQueue, run_workers
from vaultsync.engine.renderpool import RenderJob, RenderPool, TemplateCompileError, needs_pool
from vaultsync.kube import events as ev
from vaultsync.kube.client import ApiError, KubeClient
from vaultsync.kube.events import EventRecorder
from vaultsync.metrics import (
    DRIFT_REPAIRS,
    KUBE_WRITES,
    QUEUE_DEPTH,
    ROLLOUT_RESTARTS,
    SYNC_DURATION,
    SYNCS,
    VAULTSECRETS,
)
from vaultsync.settings import Settings
from vaultsync.vault.identity import Identity, identity_for
from vaultsync.vault.reader import SecretReader

logger = logging.getLogger("vaultsync.sync")

Key = tuple[str, str]
REFRESH_ANNOTATION = "vaultsync.io/refresh"
RESTARTED_AT_ANNOTATION = "vaultsync.io/restartedAt"
MERGE_FINALIZER = "vaultsync.io/merge-cleanup"
KUBERNETES_ERROR = "KubernetesError"
DATA_REASONS = frozenset({TEMPLATE_ERROR, INVALID_DATA, KEY_CONFLICT})
"""Failures caused by what Vault holds (or a template's use of it)."""
EXPENSIVE_RENDER_SECONDS = 0.25
"""A data failure whose rendering took longer is retried at the refresh interval, not with backoff."""
INTERNAL_ERROR = "InternalError"
VAULT_UNREADABLE = frozenset({VAULT_UNAVAILABLE, PERMISSION_DENIED, AUTH_FAILED})
"""Vault cannot be read right now: a Secret drifted meanwhile is restored from the last synced data."""
TARGET_TAKEN = "target-taken"  # ObjectState.extra: creating the target Secret answered 409
NO_TEMPLATES = CompiledTemplates(entries={})


def _log_extra(key: Key, reason: str | None = None) -> dict[str, str | None]:
    """The fields that name a VaultSecret in log records (JSON logs emit namespace, name and reason)."""
    return {"vs_namespace": key[0], "vs_name": key[1], "reason": reason}


@dataclass(slots=True)
class ObjectState:
    """What the operator remembers of one VaultSecret between syncs (no secret values)."""

    body: dict[str, Any]
    handled_generation: int | None = None
    handled_refresh: str | None = None
    failures: int = 0
    written_mac: str | None = None
    target_name: str | None = None
    drift: bool = False
    last_success: str | None = None
    last_warning: tuple[str, str] | None = None
    parsed: tuple[int | None, VaultSecretSpec] | None = None
    """The spec of a generation, parsed once."""
    template_error: tuple[int | None, TemplateCompileError] | None = None
    """A generation whose templates do not compile: not compiled (nor Vault read) again until the spec
    changes."""
    ready: str = "Unknown"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> Mapping[str, Any]:
        meta: Mapping[str, Any] = self.body.get("metadata", {})
        return meta

    @property
    def status(self) -> Mapping[str, Any]:
        status: Mapping[str, Any] = self.body.get("status") or {}
        return status


def trim_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Keeps only what reconciliation needs (not managedFields or last-applied annotations)."""
    meta = body.get("metadata", {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("vaultsync.io/")}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "generation": meta.get("generation"),
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": annotations,
            "finalizers": list(meta.get("finalizers") or []),
            "deletionTimestamp": meta.get("deletionTimestamp"),
        },
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


class Engine:
    def __init__(
        self,
        settings: Settings,
        kube: KubeClient,
        reader: SecretReader,
        mac_key: bytes,
        recorder: EventRecorder,
        render_pool: RenderPool | None = None,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.reader = reader
        self.mac_key = mac_key
        self.recorder = recorder
        self.queue: WorkQueue[Key] = WorkQueue()
        self.objects: dict[Key, ObjectState] = {}
        self.secrets = SecretCache()
        self.secrets_synced = asyncio.Event()
        self.syncs_started = 0
        self.stopping = False
        self.render_pool = render_pool or RenderPool(
            settings.render_workers,
            memory_bytes=settings.render_memory * 2**20,
            wall_seconds=settings.render_timeout,
        )
        """Worker processes that compile and render templates and check Secret types (started by the runtime,
        or at the first render)."""

    # Events in --------------------------------------------------------------------------------------------
    def on_vaultsecret(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata", {})
        key: Key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            gone = self.objects.pop(key, None)
            if gone is not None:
                self._count_ready(gone.ready, -1)
                if gone.target_name:
                    self.secrets.forget_last_synced((key[0], gone.target_name))
            self.queue.forget(key)
            return
        trimmed = trim_body(body)
        state = self.objects.get(key)
        if state is None or state.meta.get("uid") != meta.get("uid"):
            if state is not None:
                self._count_ready(state.ready, -1)
            status = trimmed["status"]
            state = self.objects[key] = ObjectState(
                body=trimmed,
                written_mac=status.get("secretMAC"),
                target_name=status.get("secretName"),
                ready=(current_ready(status) or {}).get("status", "Unknown"),
            )
            self._count_ready(state.ready, 1)
            self.queue.add(key)
            return
        seen_mac = state.status.get("secretMAC")
        state.body = trimmed
        self._follow_status_mac(key, state, seen_mac)
        # Another replica (the leader) writes the status: follow its Ready in vaultsync_vaultsecrets.
        observed = (current_ready(trimmed["status"]) or {}).get("status", "Unknown")
        if observed != state.ready:
            self._count_ready(state.ready, -1)
            self._count_ready(observed, 1)
            state.ready = observed
        refresh = trimmed["metadata"]["annotations"].get(REFRESH_ANNOTATION)
        if (
            meta.get("generation") != state.handled_generation
            or refresh != state.handled_refresh
            or meta.get("deletionTimestamp")
        ):
            self.queue.add(key)

    def on_secret(self, event_type: str | None, secret: Mapping[str, Any]) -> None:
        meta = secret.get("metadata", {})
        skey: Key = (meta.get("namespace", ""), meta.get("name", ""))
        deleted = event_type == "DELETED"
        if deleted:
            # A relist reports a deletion it missed with only the name: the cached copy names the owner.
            secret = self.secrets.get(skey) or dict(secret)
        try:
            self._check_drift(skey, secret, deleted=deleted)
        finally:
            if deleted:
                self.secrets.discard(skey)
            else:
                self.secrets[skey] = dict(secret)

    def _check_drift(self, skey: Key, secret: Mapping[str, Any], *, deleted: bool) -> None:
        """Queues the VaultSecret whose Secret no longer holds what it wrote; before the cache takes the new
        copy, keeps the last synced one aside (restored from while Vault cannot be read)."""
        owner = owner_of(secret)
        if owner is None:
            return
        key: Key = (skey[0], owner)
        state = self.objects.get(key)
        if state is None or state.meta.get("deletionTimestamp") or state.target_name != skey[1]:
            return
        if state.written_mac is None:
            return
        if deleted:
            drifted = True
        else:
            policy = ((state.body.get("spec") or {}).get("target") or {}).get("creationPolicy", "Owner")
            probe = DesiredSecret(skey[1], "", {}, {}, {}, policy)
            drifted = not self._holds_written(key, state, our_data(secret, probe))
        if drifted:
            self.secrets.set_aside(skey)
            state.drift = True
            self.queue.add(key)
        else:
            self.secrets.forget_last_synced(skey)

    def _follow_status_mac(self, key: Key, state: ObjectState, seen_mac: str | None) -> None:
        """A standby replica never writes: what the Secret should hold is what the leader's status says.
        Follow status.secretMAC while this replica wrote nothing newer (written_mac is still the last MAC
        seen), so that a rotation by the leader is not taken for drift here (and no stale copy is kept
        aside, or restored after a takeover)."""
        status_mac = state.status.get("secretMAC")
        if status_mac == seen_mac or state.written_mac != seen_mac or not isinstance(status_mac, str):
            return
        state.written_mac = status_mac
        target = state.target_name
        if target is None:
            return
        skey: Key = (key[0], target)
        if self.secrets.last_synced(skey) is None:
            return
        current = self.secrets.get(skey)
        policy = ((state.body.get("spec") or {}).get("target") or {}).get("creationPolicy", "Owner")
        probe = DesiredSecret(target, "", {}, {}, {}, policy)
        if current is not None and self._holds_written(key, state, our_data(current, probe)):
            self.secrets.forget_last_synced(skey)  # the "drift" was the leader's own write

    # MACs -------------------------------------------------------------------------------------------------
    def _object_mac_key(self, namespace: str, uid: str | None) -> bytes:
        """The VaultSecret's own MAC key (core.mac.object_mac_key): never the master key itself."""
        return object_mac_key(self.mac_key, namespace, str(uid or ""))

    def _holds_written(self, key: Key, state: ObjectState, data: Mapping[str, bytes]) -> bool:
        """Whether `data` is what the VaultSecret last wrote (state.written_mac). A MAC made by an earlier
        version with the master key (as status.secretMAC of an upgraded object holds) counts too."""
        written = state.written_mac
        if written is None:
            return False
        return mac_matches(self._object_mac_key(key[0], state.meta.get("uid")), data, written) or mac_matches(
            self.mac_key, data, written
        )

    # Workers ----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await asyncio.wait_for(self.secrets_synced.wait(), timeout=60)
        except TimeoutError:
            logger.warning("the managed-Secret watch has not listed yet; syncing without its cache")
        await run_workers(self.queue, self.sync, self.settings.concurrency)

    async def sync(self, key: Key) -> None:
        state = self.objects.get(key)
        if state is None or self.stopping:
            return
        QUEUE_DEPTH.set(len(self.queue))
        if state.meta.get("deletionTimestamp"):
            await self._finalize(key, state)
            return
        started = time.monotonic()
        self.syncs_started += 1
        refresh = state.meta.get("annotations", {}).get(REFRESH_ANNOTATION)
        forced = refresh != state.handled_refresh and state.handled_generation is not None
        drift, state.drift = state.drift, False
        state.handled_generation = state.meta.get("generation")
        state.handled_refresh = refresh
        spec: VaultSecretSpec | None = None
        rendering = 0.0
        try:
            generation = state.meta.get("generation")
            spec = self._parse(state)
            await self._ensure_finalizer(key, state, spec)
            identity = self._identity(key[0], spec.auth)
            results = await asyncio.gather(
                *(self.reader.read(identity, source, fresh=forced or drift) for source in spec.sources)
            )
            sources = [
                SourceData(source=s, data=r.data, version=r.version, created_time=r.created_time)
                for s, r in zip(spec.sources, results, strict=True)
            ]
            render_started = time.monotonic()
            try:
                data = await self._shape(key, state, spec, sources, generation)
            finally:
                rendering = time.monotonic() - render_started
            desired = desired_secret(spec.target, spec.secret_type, data)
            versions = {s.label: r.version for s, r in zip(spec.sources, results, strict=True) if r.version}
            await self._apply(key, state, spec, desired, versions, drift=drift)
        except SyncError as exc:
            if isinstance(exc, TemplateCompileError):
                # It fails the same way until the spec changes (a new generation syncs at once): no retries.
                await self._failed(key, state, exc.reason, exc.message, retry=False)
            elif exc.reason in DATA_REASONS and spec is not None and rendering > EXPENSIVE_RENDER_SECONDS:
                # An expensive render that failed fails the same way on the same data: try again at the next
                # refresh (or on a spec change), not in a backoff loop that burns a CPU on every retry.
                await self._failed(key, state, exc.reason, exc.message, retry=False)
                self._schedule_refresh(key, spec)
            else:
                await self._failed(key, state, exc.reason, exc.message, retry=exc.reason != INVALID_SPEC)
        except ApiError as exc:
            await self._failed(key, state, KUBERNETES_ERROR, f"Kubernetes API: {exc}", retry=True)
        except Exception as exc:
            logger.exception(
                "sync of %s/%s failed unexpectedly (%s)",
                key[0],
                key[1],
                type(exc).__name__,
                extra=_log_extra(key, INTERNAL_ERROR),
            )
            await self._failed(
                key, state, INTERNAL_ERROR, f"internal error ({type(exc).__name__})", retry=True
            )
        else:
            state.failures = 0
            self._schedule_refresh(key, spec)
        finally:
            SYNC_DURATION.observe(time.monotonic() - started)

    def _schedule_refresh(self, key: Key, spec: VaultSecretSpec) -> None:
        """Schedules the next read of Vault, spread by jitter so that objects made together refresh apart."""
        if spec.refresh_interval > 0:
            jitter = self.settings.refresh_jitter
            self.queue.add_after(key, spec.refresh_interval * random.uniform(1 - jitter, 1 + jitter))

    async def _shape(
        self,
        key: Key,
        state: ObjectState,
        spec: VaultSecretSpec,
        sources: list[SourceData],
        generation: int | None,
    ) -> dict[str, bytes]:
        """The Secret's data: in a render worker for templates and checked types, else inline."""
        if not needs_pool(spec):
            # A plain copy: linear in Vault's (capped) answer, cheaper than a process hop (see needs_pool).
            return shape_secret(spec, sources, templates=NO_TEMPLATES, namespace=key[0], name=key[1])
        if state.template_error is not None and state.template_error[0] == generation:
            raise state.template_error[1]  # not compiled nor sent again until the spec changes
        # Memory, CPU and wall-clock limits (renderpool.py); other syncs go on meanwhile.
        job = RenderJob(spec=spec, sources=tuple(sources), namespace=key[0], name=key[1])
        try:
            return await self.render_pool.shape(job, has_templates=bool(spec.templates))
        except TemplateCompileError as exc:
            state.template_error = (generation, exc)
            raise

    def _parse(self, state: ObjectState) -> VaultSecretSpec:
        """The spec, parsed once per generation (templates are compiled in the render workers, which cache
        them by source)."""
        body = state.body
        generation = body["metadata"].get("generation")
        if state.parsed is not None and state.parsed[0] == generation:
            return state.parsed[1]
        spec = parse_spec(
            body.get("spec") or {},
            name=body["metadata"]["name"],
            default_mount=self.settings.default_mount,
            default_refresh=self.settings.default_refresh,
        )
        state.parsed = (generation, spec)
        return spec

    def _identity(self, namespace: str, auth: AuthSpec) -> Identity:
        return identity_for(namespace, auth, self.settings)

    # Writing ----------------------------------------------------------------------------------------------
    async def _apply(
        self,
        key: Key,
        state: ObjectState,
        spec: VaultSecretSpec,
        desired: DesiredSecret,
        versions: Mapping[str, int],
        *,
        drift: bool,
    ) -> None:
        namespace, name = key
        owner = Owner(namespace=namespace, name=name, uid=state.meta["uid"])
        mac = secret_mac(self._object_mac_key(namespace, owner.uid), desired.data)
        previous_mac = state.status.get("secretMAC")
        if previous_mac not in (None, mac) and mac_matches(self.mac_key, desired.data, previous_mac):
            # Made by an earlier version with the master key, for the same data: not a change (no Rotated
            # Event, no rollout restart); the status below just gets the per-object MAC.
            previous_mac = mac
        state.target_name = desired.name
        outcome = await self._write_secret(namespace, desired, owner, mac, state)
        self.secrets.forget_last_synced((namespace, desired.name))
        if desired.creation_policy != "Merge":
            await self._drop_merge_finalizer(key, state)
        await self._remove_old_target(state, owner, desired.name)
        changed = mac != previous_mac
        renamed = state.status.get("secretName") not in (None, desired.name)
        action = outcome
        if outcome == "created" and (previous_mac is None or renamed):
            self.recorder.post(state.body, ev.NORMAL, ev.SYNCED, f"created Secret {desired.name} from Vault")
        elif changed:
            action = "rotated" if previous_mac else outcome
            self.recorder.post(
                state.body, ev.NORMAL, ev.ROTATED, f"Secret {desired.name} updated: Vault data changed"
            )
        elif outcome in ("created", "updated"):
            # Our data was missing or different although Vault's was not: someone changed it. (A type change
            # posted SecretReplaced; a spec change of labels or annotations is "metadata updated".)
            DRIFT_REPAIRS.inc()
            action = f"restored ({'deleted' if outcome == 'created' else 'changed'} outside vaultsync)"
            self.recorder.post(
                state.body,
                ev.NORMAL,
                ev.DRIFT_REPAIRED,
                f"Secret {desired.name} was {'deleted' if outcome == 'created' else 'changed'} "
                "outside vaultsync; restored",
            )
        elif state.ready == "False":
            self.recorder.post(
                state.body, ev.NORMAL, ev.SYNCED, f"Secret {desired.name} is in sync with Vault again"
            )
        if changed and previous_mac is not None:
            await self._restart_rollouts(state, spec)
        now = now_rfc3339()
        state.last_success = now
        state.last_warning = None
        status = {
            "observedGeneration": state.meta.get("generation"),
            "secretName": desired.name,
            "secretMAC": mac,
            "vaultVersion": dict(versions),
            "lastSyncTime": now
            if changed or not state.status.get("lastSyncTime")
            else state.status["lastSyncTime"],
            "conditions": [
                ready_condition(
                    state.status,
                    ready=True,
                    reason=SYNCED,
                    message=f"Secret {desired.name} holds what Vault returned",
                    generation=state.meta.get("generation"),
                    now=now,
                )
            ],
        }
        await self._patch_status(key, state, status)
        SYNCS.labels("synced" if outcome != "unchanged" else "unchanged", SYNCED).inc()
        if outcome != "unchanged":
            logger.info(
                "%s/%s: Secret %s %s",
                namespace,
                name,
                desired.name,
                action,
                extra={"vs_namespace": namespace, "vs_name": name, "reason": SYNCED},
            )

    async def _existing(
        self, namespace: str, name: str, *, unseen_is_absent: bool = False
    ) -> dict[str, Any] | None:
        cached = self.secrets.get((namespace, name))
        if cached is not None:
            return cached
        if unseen_is_absent and self.secrets_synced.is_set():
            # The watch has listed every Secret we manage: one it has not seen is absent, or is not ours and
            # then creating it answers 409 and the next attempt reads it (saves a GET per new Secret).
            return None
        return await self.kube.get_secret(namespace, name)

    async def _write_secret(
        self, namespace: str, desired: DesiredSecret, owner: Owner, mac: str, state: ObjectState
    ) -> str:
        """Creates, replaces or leaves the Secret; returns created, updated (our data differed), metadata
        updated (only labels, annotations or ownership differed), replaced (type changed) or unchanged."""
        for attempt in (1, 2, 3):
            optimistic = attempt == 1 and not state.extra.get(TARGET_TAKEN)
            existing = await self._existing(namespace, desired.name, unseen_is_absent=optimistic)
            check_ownership(existing, desired, owner)
            mac_key = self._object_mac_key(namespace, owner.uid)
            if existing is not None and is_up_to_date(existing, desired, owner, mac_key):
                state.written_mac = mac
                return "unchanged"
            secret = build_secret(existing, desired, owner)
            state.written_mac = mac
            try:
                if existing is None:
                    result = await self.kube.create_secret(namespace, secret)
                    outcome = "created"
                elif (
                    desired.creation_policy != "Merge"
                    and existing.get("type", "Opaque") != desired.secret_type
                ):
                    # A Secret's type is immutable: replace the object, guarded by its uid.
                    await self.kube.delete_secret(namespace, desired.name, uid=existing["metadata"]["uid"])
                    for meta_key in ("uid", "resourceVersion", "creationTimestamp"):
                        secret["metadata"].pop(meta_key, None)
                    result = await self.kube.create_secret(namespace, secret)
                    self.recorder.post(
                        state.body,
                        ev.NORMAL,
                        ev.SECRET_REPLACED,
                        f"Secret {desired.name} re-created to change its type to {desired.secret_type}",
                    )
                    outcome = "replaced"
                else:
                    result = await self.kube.replace_secret(namespace, desired.name, secret)
                    same_data = secret_mac(mac_key, our_data(existing, desired)) == mac
                    outcome = "metadata updated" if same_data else "updated"
            except ApiError as exc:
                if exc.status in (409, 404) and attempt < 3:
                    # Someone else changed or removed it meanwhile: look again.
                    self.secrets.pop((namespace, desired.name), None)
                    if existing is None:
                        state.extra[TARGET_TAKEN] = True  # not a Secret we watch: read it first from now on
                    continue
                raise
            KUBE_WRITES.labels("secret").inc()
            self.secrets[(namespace, desired.name)] = result
            return outcome
        raise AssertionError("unreachable")

    async def _remove_old_target(self, state: ObjectState, owner: Owner, new_name: str) -> None:
        old_name = state.status.get("secretName")
        if not old_name or old_name == new_name:
            return
        old = await self._existing(owner.namespace, old_name)
        if old is None or owner_of(old) != owner.name:
            return
        refs = old.get("metadata", {}).get("ownerReferences") or []
        if any(ref.get("uid") == owner.uid for ref in refs):
            await self.kube.delete_secret(owner.namespace, old_name, uid=old["metadata"]["uid"])
            self.secrets.pop((owner.namespace, old_name), None)
            KUBE_WRITES.labels("secret").inc()
            self.recorder.post(
                state.body,
                ev.NORMAL,
                ev.TARGET_RENAMED,
                f"deleted the old Secret {old_name} (now {new_name})",
            )

    async def _restart_rollouts(self, state: ObjectState, spec: VaultSecretSpec) -> None:
        now = now_rfc3339()
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}}}}
        namespace = state.meta["namespace"]
        for target in spec.rollout_restart_targets:
            try:
                await self.kube.patch_workload(namespace, target.kind, target.name, patch)
            except ApiError as exc:
                ROLLOUT_RESTARTS.labels("failed").inc()
                why = "it does not exist" if exc.status == 404 else f"{exc.status} {exc.reason}"
                self.recorder.post(
                    state.body,
                    ev.WARNING,
                    ev.ROLLOUT_RESTART_FAILED,
                    f"could not restart {target.kind} {target.name}: {why}",
                )
                continue
            KUBE_WRITES.labels("workload").inc()
            ROLLOUT_RESTARTS.labels("ok").inc()
            self.recorder.post(
                state.body,
                ev.NORMAL,
                ev.ROLLOUT_RESTARTED,
                f"restarted {target.kind} {target.name}: Secret changed",
            )

    async def _patch_status(self, key: Key, state: ObjectState, desired: Mapping[str, Any]) -> None:
        patch = status_patch(state.status, desired)
        ready = next(c["status"] for c in desired["conditions"] if c["type"] == "Ready")
        if ready != state.ready:
            self._count_ready(state.ready, -1)
            self._count_ready(ready, 1)
            state.ready = ready
        if not patch:
            return
        try:
            result = await self.kube.patch_vaultsecret_status(key[0], key[1], patch)
        except ApiError as exc:
            if exc.status == 404:
                return  # deleted meanwhile
            raise
        KUBE_WRITES.labels("status").inc()
        if key in self.objects and isinstance(result, Mapping):
            fresh = trim_body(result)
            state.body["status"] = fresh["status"]
            # Later patches that carry a resourceVersion precondition (finalizers) need the new one.
            state.body["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"]

    async def _failed(self, key: Key, state: ObjectState, reason: str, message: str, *, retry: bool) -> None:
        SYNCS.labels("failed", reason).inc()
        if reason in VAULT_UNREADABLE:
            await self._restore_last_synced(key, state, reason)
        if state.status.get("secretName") and reason not in (INVALID_SPEC,):
            kept_since = state.last_success or state.status.get("lastSyncTime")
            message += f". The Secret {state.status['secretName']} is kept as last synced"
            if kept_since:
                message += f" (last good sync {kept_since})"
        logger.warning(
            "%s/%s: %s: %s",
            key[0],
            key[1],
            reason,
            message,
            extra={"vs_namespace": key[0], "vs_name": key[1], "reason": reason},
        )
        if state.last_warning != (reason, message):
            state.last_warning = (reason, message)
            self.recorder.post(state.body, ev.WARNING, reason, message)
        status = {
            "observedGeneration": state.meta.get("generation"),
            "conditions": [
                ready_condition(
                    state.status,
                    ready=False,
                    reason=reason,
                    message=message,
                    generation=state.meta.get("generation"),
                    now=now_rfc3339(),
                )
            ],
        }
        try:
            await self._patch_status(key, state, status)
        except ApiError as exc:
            logger.warning(
                "%s/%s: could not write status (%s)", key[0], key[1], exc, extra=_log_extra(key, reason)
            )
        if retry:
            state.failures += 1
            base = self.settings.backoff_base * 2 ** min(state.failures - 1, 16)
            # Jitter applies at the cap too (0.8-1.0 x cap), so that retries never fall into lockstep.
            delay = min(self.settings.backoff_max * random.uniform(0.8, 1.0), base * random.uniform(0.8, 1.2))
            self.queue.add_after(key, delay)

    async def _restore_last_synced(self, key: Key, state: ObjectState, reason: str) -> None:
        """Writes back the last synced copy of a Secret deleted or edited by hand (kept by on_secret) while
        Vault cannot be read: Kubernetes is the cache. Only a copy whose MAC is what we last wrote is used;
        ownership is checked as for any write (a foreign Secret that took the name is left alone)."""
        target = state.target_name
        if not target:
            return
        skey: Key = (key[0], target)
        copy = self.secrets.last_synced(skey)
        if copy is None:
            return
        owner = Owner(namespace=key[0], name=key[1], uid=state.meta["uid"])
        desired = last_synced_desired(copy, owner)
        if desired.name != target or not self._holds_written(key, state, desired.data):
            self.secrets.forget_last_synced(skey)  # not what we wrote: nothing to restore from
            return
        mac = secret_mac(self._object_mac_key(key[0], owner.uid), desired.data)
        try:
            outcome = await self._write_secret(key[0], desired, owner, mac, state)
        except SyncError as exc:
            self.secrets.forget_last_synced(skey)
            logger.warning(
                "%s/%s: not restoring Secret %s from the last synced data: %s",
                *key,
                target,
                exc.message,
                extra=_log_extra(key, exc.reason),
            )
            return
        except ApiError as exc:
            logger.warning(
                "%s/%s: could not restore Secret %s from the last synced data (%s); retrying",
                *key,
                target,
                exc,
                extra=_log_extra(key, KUBERNETES_ERROR),
            )
            return
        self.secrets.forget_last_synced(skey)
        if outcome == "unchanged":
            return
        DRIFT_REPAIRS.inc()
        how = "deleted" if outcome == "created" else "changed"
        self.recorder.post(
            state.body,
            ev.NORMAL,
            ev.DRIFT_REPAIRED,
            f"Secret {target} was {how} outside vaultsync; restored from the last synced data because Vault "
            f"could not be read ({reason})",
        )
        logger.info(
            "%s/%s: Secret %s restored from the last synced data (%s outside vaultsync, %s)",
            *key,
            target,
            how,
            reason,
            extra=_log_extra(key, reason),
        )

    # Ownership bookkeeping --------------------------------------------------------------------------------
    async def _ensure_finalizer(self, key: Key, state: ObjectState, spec: VaultSecretSpec) -> None:
        """Adds the Merge cleanup finalizer. It is removed only once a write with another policy succeeded
        (`_drop_merge_finalizer`): a switch away from Merge that is refused (TargetConflict) keeps it, so
        that deleting the VaultSecret still removes our keys from the merged Secret."""
        finalizers: list[str] = list(state.meta.get("finalizers") or [])
        if spec.target.creation_policy == "Merge" and MERGE_FINALIZER not in finalizers:
            await self._set_finalizers(key, state, [*finalizers, MERGE_FINALIZER])

    async def _drop_merge_finalizer(self, key: Key, state: ObjectState) -> None:
        finalizers: list[str] = list(state.meta.get("finalizers") or [])
        if MERGE_FINALIZER in finalizers:
            await self._set_finalizers(key, state, [f for f in finalizers if f != MERGE_FINALIZER])

    async def _set_finalizers(self, key: Key, state: ObjectState, finalizers: list[str]) -> None:
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": state.meta.get("resourceVersion")}}
        result = await self.kube.patch_vaultsecret(key[0], key[1], patch)
        KUBE_WRITES.labels("vaultsecret").inc()
        if isinstance(result, Mapping):
            state.body["metadata"] = trim_body(result)["metadata"]

    async def _finalize(self, key: Key, state: ObjectState) -> None:
        if MERGE_FINALIZER not in (state.meta.get("finalizers") or []):
            return
        namespace = key[0]
        try:
            namespace_obj = await self.kube.get_namespace(namespace)
            terminating = namespace_obj is None or bool(
                namespace_obj.get("metadata", {}).get("deletionTimestamp")
            )
            target = state.target_name or state.status.get("secretName")
            if target and not terminating:
                existing = await self._existing(namespace, target)
                if existing is not None and owner_of(existing) == key[1]:
                    await self.kube.replace_secret(namespace, target, without_our_keys(existing))
                    KUBE_WRITES.labels("secret").inc()
            finalizers = [f for f in state.meta.get("finalizers") or [] if f != MERGE_FINALIZER]
            await self._set_finalizers(key, state, finalizers)
        except ApiError as exc:
            if exc.status == 404:
                return
            logger.warning(
                "%s/%s: cleanup on deletion failed (%s); retrying",
                key[0],
                key[1],
                exc,
                extra=_log_extra(key, KUBERNETES_ERROR),
            )
            self.queue.add_after(key, self.settings.backoff_base * 5)

    def _count_ready(self, ready: str, delta: int) -> None:
        VAULTSECRETS.labels(ready if ready in ("True", "False") else "Unknown").inc(delta)
