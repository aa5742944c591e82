"""The engine's ownership, MAC and restore paths against an in-memory Kubernetes and Vault (issue 10,
findings 5, 8 and 10): per-object MACs with a quiet upgrade of old status MACs, drifted Secrets restored
from the last synced copy while Vault cannot be read, a Merge target that a policy switch never takes over."""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

from vaultsync.core.desired import MANAGED_AS_ANNOTATION
from vaultsync.core.errors import TARGET_CONFLICT, VAULT_UNAVAILABLE, SyncError
from vaultsync.core.mac import object_mac_key, secret_mac
from vaultsync.engine.engine import MERGE_FINALIZER, Engine
from vaultsync.kube.client import ApiError
from vaultsync.settings import Settings
from vaultsync.vault.client import KVSecret

MASTER = b"m" * 32
NS = "shop"
UID = "vs-uid-1"
KEY = (NS, "db")


class FakeKube:
    """Secrets and one VaultSecret's status, with resourceVersions and uids like the API server's."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []
        self.status: dict[str, Any] = {}
        self.versions = itertools.count(1)

    def _stored(self, secret: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(secret))
        stored["metadata"]["resourceVersion"] = str(next(self.versions))
        stored["metadata"].setdefault("uid", f"secret-uid-{stored['metadata']['resourceVersion']}")
        return stored

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.secrets.get(name)
        return copy.deepcopy(found) if found else None

    async def create_secret(self, namespace: str, secret: Mapping[str, Any]) -> dict[str, Any]:
        name = secret["metadata"]["name"]
        if name in self.secrets:
            raise ApiError(409, "AlreadyExists", name)
        self.writes.append(("create", name))
        self.secrets[name] = self._stored(secret)
        return copy.deepcopy(self.secrets[name])

    async def replace_secret(self, namespace: str, name: str, secret: Mapping[str, Any]) -> dict[str, Any]:
        current = self.secrets.get(name)
        if current is None:
            raise ApiError(404, "NotFound", name)
        if secret["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", name)
        self.writes.append(("replace", name))
        self.secrets[name] = self._stored(secret)
        return copy.deepcopy(self.secrets[name])

    async def delete_secret(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        self.writes.append(("delete", name))
        self.secrets.pop(name, None)

    async def patch_vaultsecret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append(("patch vaultsecret", name))
        return {"metadata": {"name": name, "namespace": namespace, "uid": UID, **patch["metadata"]}}

    async def patch_vaultsecret_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.writes.append(("status", name))
        for field, value in patch.items():  # a JSON merge patch of the status
            if value is None:
                self.status.pop(field, None)
            else:
                self.status[field] = copy.deepcopy(value)
        return {"metadata": {"name": name, "namespace": namespace, "uid": UID}, "status": self.status}

    async def patch_workload(self, namespace: str, kind: str, name: str, patch: Mapping[str, Any]) -> None:
        self.writes.append(("restart", name))


class FakeReader:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {"password": "s3cret", "user": "app"}
        self.down = False

    async def read(self, identity: Any, source: Any, *, fresh: bool = False) -> KVSecret:
        if self.down:
            raise SyncError(VAULT_UNAVAILABLE, "Vault is sealed", retryable=True)
        return KVSecret(data=dict(self.data), version=3, created_time=None)


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def post(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))


class World:
    def __init__(self) -> None:
        self.kube = FakeKube()
        self.reader = FakeReader()
        self.recorder = FakeRecorder()
        self.engine = Engine(
            Settings(), cast(Any, self.kube), cast(Any, self.reader), MASTER, cast(Any, self.recorder)
        )
        self.engine.secrets_synced.set()
        self.generation = 0

    def vaultsecret(self, spec: Mapping[str, Any], *, status: Mapping[str, Any] | None = None) -> None:
        body = {
            "apiVersion": "vaultsync.io/v1alpha1",
            "kind": "VaultSecret",
            "metadata": {"name": "db", "namespace": NS, "uid": UID, "generation": 1, "resourceVersion": "1"},
            "spec": dict(spec),
            "status": dict(status or self.kube.status),
        }
        state = self.engine.objects.get(KEY)
        self.generation += 1
        body["metadata"]["generation"] = self.generation
        if state is not None:
            body["metadata"]["finalizers"] = state.meta.get("finalizers")
        self.engine.on_vaultsecret("ADDED" if state is None else "MODIFIED", body)

    def watch(self, event: str, name: str = "db") -> None:
        """What the Secret watch delivers for the current state of a Secret."""
        secret = self.kube.secrets.get(name)
        self.engine.on_secret(
            event, copy.deepcopy(secret) if secret else {"metadata": {"namespace": NS, "name": name}}
        )

    async def sync(self) -> None:
        await self.engine.sync(KEY)
        await asyncio.sleep(0)

    def ready(self) -> tuple[str, str]:
        condition = next(c for c in self.kube.status["conditions"] if c["type"] == "Ready")
        return condition["status"], condition["reason"]


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    # The render pool starts its workers on first use; these specs never need it.


def data_of(secret: Mapping[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# status.secretMAC per object (finding 8) --------------------------------------------------------------------
def test_status_mac_is_keyed_per_object(world: World) -> None:
    async def go() -> None:
        world.vaultsecret({"path": "apps/db"})
        await world.sync()

    run(go())
    wanted = {"password": b"s3cret", "user": b"app"}
    assert world.kube.status["secretMAC"] == secret_mac(object_mac_key(MASTER, NS, UID), wanted)
    assert world.kube.status["secretMAC"] != secret_mac(MASTER, wanted)


def test_an_upgraded_object_with_a_master_key_mac_is_not_a_change(world: World) -> None:
    """Status written by an earlier version (MAC under the master key itself): a restart of the upgraded
    operator writes no Secret, restarts nothing, posts no Rotated Event; it only rewrites the status MAC."""

    async def go() -> None:
        world.vaultsecret(
            {"path": "apps/db", "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]}
        )
        await world.sync()
        legacy = secret_mac(MASTER, data_of(world.kube.secrets["db"]))
        last_sync = world.kube.status["lastSyncTime"]
        world.kube.status["secretMAC"] = legacy
        # The operator restarts: new engine state, the Secret watch lists the Secret, then the object syncs.
        world.engine.objects.clear()
        world.engine.secrets = type(world.engine.secrets)()
        world.kube.writes.clear()
        world.recorder.events.clear()
        world.vaultsecret(
            {"path": "apps/db", "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]}
        )
        world.watch("ADDED")
        assert not world.engine.objects[KEY].drift  # the old MAC is recognised by the drift check too
        await world.sync()
        assert world.kube.writes == [("status", "db")]
        assert world.recorder.events == []
        assert world.kube.status["secretMAC"] == secret_mac(
            object_mac_key(MASTER, NS, UID), data_of(world.kube.secrets["db"])
        )
        assert world.kube.status["lastSyncTime"] == last_sync

    run(go())


def test_a_master_key_mac_of_other_data_is_a_rotation(world: World) -> None:
    async def go() -> None:
        world.vaultsecret(
            {"path": "apps/db", "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]}
        )
        await world.sync()
        world.kube.status["secretMAC"] = secret_mac(MASTER, data_of(world.kube.secrets["db"]))
        world.reader.data["password"] = "rotated"
        world.kube.writes.clear()
        world.vaultsecret(
            {"path": "apps/db", "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]}
        )
        await world.sync()
        assert ("replace", "db") in world.kube.writes and ("restart", "web") in world.kube.writes
        assert "Rotated" in [reason for _, reason, _ in world.recorder.events]

    run(go())


# Restore from the last synced data while Vault cannot be read (finding 10) ----------------------------------
@pytest.mark.parametrize("policy", ["Owner", "Orphan"])
def test_a_secret_deleted_while_vault_is_sealed_is_restored_from_the_last_synced_copy(
    world: World, policy: str
) -> None:
    async def go() -> None:
        world.vaultsecret({"path": "apps/db", "target": {"creationPolicy": policy, "labels": {"app": "x"}}})
        await world.sync()
        world.watch("ADDED")
        synced = copy.deepcopy(world.kube.secrets["db"])
        world.reader.down = True
        del world.kube.secrets["db"]  # deleted by hand
        world.watch("DELETED")
        assert world.engine.objects[KEY].drift
        await world.sync()
        restored = world.kube.secrets["db"]
        assert data_of(restored) == data_of(synced)
        assert restored["type"] == synced["type"]
        assert restored["metadata"]["labels"] == synced["metadata"]["labels"]
        assert restored["metadata"]["annotations"] == synced["metadata"]["annotations"]
        assert restored["metadata"].get("ownerReferences") == synced["metadata"].get("ownerReferences")
        assert world.ready() == ("False", VAULT_UNAVAILABLE)
        repaired = [m for _, r, m in world.recorder.events if r == "DriftRepaired"]
        assert len(repaired) == 1
        assert (
            "deleted" in repaired[0]
            and "last synced data" in repaired[0]
            and VAULT_UNAVAILABLE in repaired[0]
        )
        world.watch("ADDED")  # our own write comes back: not drift, and no copy is kept any more
        assert not world.engine.objects[KEY].drift and world.engine.secrets.kept_aside() == 0

        # Vault back: in sync, nothing written but the status, no Rotated Event.
        world.reader.down = False
        world.kube.writes.clear()
        await world.sync()
        assert world.kube.writes == [("status", "db")]
        assert world.ready() == ("True", "Synced")
        assert "Rotated" not in [r for _, r, _ in world.recorder.events]

    run(go())


def test_a_secret_edited_while_vault_is_sealed_is_restored(world: World) -> None:
    async def go() -> None:
        world.vaultsecret({"path": "apps/db"})
        await world.sync()
        world.watch("ADDED")
        synced = data_of(world.kube.secrets["db"])
        world.reader.down = True
        edited = world.kube.secrets["db"]
        edited["data"] = {"password": base64.b64encode(b"hand-made").decode(), "extra": "eA=="}
        edited["metadata"]["resourceVersion"] = "900"
        world.watch("MODIFIED")
        edited["data"]["password"] = base64.b64encode(b"edited again").decode()  # a second edit
        edited["metadata"]["resourceVersion"] = "901"
        world.watch("MODIFIED")
        await world.sync()
        assert data_of(world.kube.secrets["db"]) == synced
        assert "DriftRepaired" in [r for _, r, _ in world.recorder.events]
        assert world.ready() == ("False", VAULT_UNAVAILABLE)

    run(go())


def test_a_merge_target_is_restored_with_only_our_keys(world: World) -> None:
    async def go() -> None:
        world.kube.secrets["shared"] = world.kube._stored(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "shared", "namespace": NS},
                "type": "Opaque",
                "data": {"theirs": "dGhlaXJz"},
            }
        )
        world.vaultsecret({"path": "apps/db", "target": {"name": "shared", "creationPolicy": "Merge"}})
        await world.sync()
        world.watch("ADDED", "shared")
        world.reader.down = True
        current = world.kube.secrets["shared"]
        current["data"] = {
            "theirs": base64.b64encode(b"theirs, edited").decode()
        }  # ours removed, theirs edited
        current["metadata"]["resourceVersion"] = "900"
        world.watch("MODIFIED", "shared")
        await world.sync()
        assert data_of(world.kube.secrets["shared"]) == {
            "theirs": b"theirs, edited",
            "password": b"s3cret",
            "user": b"app",
        }

    run(go())


def test_a_kept_copy_that_is_not_what_we_wrote_is_never_used(world: World) -> None:
    async def go() -> None:
        world.vaultsecret({"path": "apps/db"})
        await world.sync()
        world.watch("ADDED")
        world.reader.down = True
        world.engine.objects[KEY].written_mac = secret_mac(object_mac_key(MASTER, NS, UID), {"other": b"x"})
        del world.kube.secrets["db"]
        world.watch("DELETED")
        world.kube.writes.clear()
        await world.sync()
        assert "db" not in world.kube.secrets
        assert [w for w in world.kube.writes if w[0] != "status"] == []
        assert world.engine.secrets.kept_aside() == 0

    run(go())


def test_a_foreign_secret_that_took_the_name_is_not_overwritten_by_a_restore(world: World) -> None:
    async def go() -> None:
        world.vaultsecret({"path": "apps/db"})
        await world.sync()
        world.watch("ADDED")
        world.reader.down = True
        del world.kube.secrets["db"]
        world.watch("DELETED")
        foreign = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"x": "eA=="}}
        world.kube.secrets["db"] = world.kube._stored(foreign)
        before = copy.deepcopy(world.kube.secrets["db"])
        await world.sync()
        assert world.kube.secrets["db"] == before
        assert world.ready() == ("False", VAULT_UNAVAILABLE)

    run(go())


# Merge stays a merge target (finding 5) ---------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["Owner", "Orphan"])
def test_switching_a_merge_vaultsecret_away_from_merge_is_a_conflict_and_keeps_the_finalizer(
    world: World, policy: str
) -> None:
    async def go() -> None:
        world.kube.secrets["shared"] = world.kube._stored(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "shared",
                    "namespace": NS,
                    "ownerReferences": [{"kind": "X", "uid": "x"}],
                },
                "type": "kubernetes.io/basic-auth",
                "data": {"username": "dQ==", "password": "cA=="},
            }
        )
        world.vaultsecret({"path": "apps/db", "target": {"name": "shared", "creationPolicy": "Merge"}})
        await world.sync()
        assert world.kube.secrets["shared"]["metadata"]["annotations"][MANAGED_AS_ANNOTATION] == "merged"
        assert MERGE_FINALIZER in world.engine.objects[KEY].meta["finalizers"]
        before = copy.deepcopy(world.kube.secrets["shared"])
        world.kube.writes.clear()
        world.vaultsecret({"path": "apps/db", "target": {"name": "shared", "creationPolicy": policy}})
        await world.sync()
        assert world.kube.secrets["shared"] == before
        assert world.ready() == ("False", TARGET_CONFLICT)
        assert [w for w in world.kube.writes if w[0] != "status"] == []
        assert MERGE_FINALIZER in world.engine.objects[KEY].meta["finalizers"]

    run(go())


def test_merge_into_a_service_account_token_is_a_conflict(world: World) -> None:
    async def go() -> None:
        world.kube.secrets["sa-token"] = world.kube._stored(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "sa-token", "namespace": NS},
                "type": "kubernetes.io/service-account-token",
                "data": {"token": "dA=="},
            }
        )
        before = copy.deepcopy(world.kube.secrets["sa-token"])
        world.vaultsecret({"path": "apps/db", "target": {"name": "sa-token", "creationPolicy": "Merge"}})
        await world.sync()
        assert world.kube.secrets["sa-token"] == before
        assert world.ready() == ("False", TARGET_CONFLICT)
        assert "kubernetes.io/service-account-token" in world.kube.status["conditions"][0]["message"]

    run(go())


def test_the_merge_finalizer_goes_once_an_owner_write_succeeds(world: World) -> None:
    async def go() -> None:
        world.vaultsecret({"path": "apps/db", "target": {"name": "new", "creationPolicy": "Merge"}})
        await world.sync()
        assert MERGE_FINALIZER in world.engine.objects[KEY].meta["finalizers"]
        world.vaultsecret({"path": "apps/db", "target": {"name": "other", "creationPolicy": "Owner"}})
        await world.sync()
        assert world.ready() == ("True", "Synced")
        assert MERGE_FINALIZER not in world.engine.objects[KEY].meta["finalizers"]

    run(go())


def test_a_standby_follows_the_leaders_status_mac_and_restores_the_latest_data(world: World) -> None:
    """A standby never writes: a rotation by the leader is not drift there, keeps no stale copy aside, and a
    restore after a takeover writes the leader's latest data, not older data."""

    async def go() -> None:
        leader = World()
        try:
            leader.vaultsecret({"path": "apps/db"})
            await leader.sync()
            world.kube = leader.kube  # the same cluster, seen by the standby through its watches
            world.engine.kube = cast(Any, leader.kube)
            world.vaultsecret({"path": "apps/db"}, status=leader.kube.status)
            world.watch("ADDED")
            leader.reader.data["password"] = "rotated"
            leader.vaultsecret({"path": "apps/db"})
            await leader.sync()
            world.watch("MODIFIED")  # the Secret's event comes before the status's
            world.generation = 1
            world.vaultsecret({"path": "apps/db"}, status=leader.kube.status)
            assert world.engine.objects[KEY].written_mac == leader.kube.status["secretMAC"]
            assert world.engine.secrets.kept_aside() == 0
        finally:
            pass  # the render pool starts its workers on first use; these specs never need it
        # Takeover while Vault is sealed; the Secret is deleted by hand.
        world.reader.down = True
        del world.kube.secrets["db"]
        world.watch("DELETED")
        await world.sync()
        assert data_of(world.kube.secrets["db"]) == {"password": b"rotated", "user": b"app"}

    run(go())
