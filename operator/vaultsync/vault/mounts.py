"""Checks, before the first read of a (Vault namespace, mount), that the mount is a KV engine of the
version the spec states, so that a VaultSecret can read nothing but KV secrets.

Vault's `sys/internal/ui/mounts/<path>` tells a token about the mount that holds `<path>` (its `path`,
`type` and `options.version`) when the token's policies grant anything under that mount (Vault's and
OpenBao's `default` policy allow the endpoint itself). It also answers for a path *inside* a mount (e.g.
`secret/data`), naming the enclosing mount: the answer's `path` must be exactly `<mount>/`.

Positive results are cached for `ttl` seconds per (Vault namespace, mount), shared by every identity (the
mount table does not depend on who asks); the reader drops an entry when a read answers 403 or 404, so a
mount that was disabled or replaced is checked again. A cached fact only ever lets a check pass: when it
disagrees with the spec, the mount is looked up again with the asking token, so a refusal always rests on
what Vault shows that token (a tenant without access to a mount learns nothing of it from another
tenant's lookup, and a mount re-created with another version is seen at once). Refusals are not cached:
they cost one lookup per attempt, and the engine does not retry an InvalidSpec.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from vaultsync.core.errors import INVALID_SPEC, PERMISSION_DENIED, SyncError
from vaultsync.core.spec import SYSTEM_MOUNTS, SourceSpec
from vaultsync.vault.client import VaultClient, VaultForbidden, VaultToken

KV_TYPES = frozenset({"kv", "generic"})
"""Mount types of the KV engine (`generic` is the old name of KV v1)."""
DEFAULT_TTL = 600.0

MountKey = tuple[str, str]  # (Vault namespace, "" for the client's own; mount)


def kv_version_of(info: Mapping[str, Any]) -> str:
    """`v1` or `v2` from a mount's `options.version` (absent or "1": v1)."""
    options = info.get("options")
    version = options.get("version") if isinstance(options, Mapping) else None
    return "v2" if str(version or "1") == "2" else "v1"


class MountChecker:
    def __init__(
        self,
        vault: VaultClient,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.vault = vault
        self.ttl = ttl
        self._clock = clock
        self._known: dict[MountKey, tuple[float, str]] = {}  # -> (checked at, "v1" | "v2")
        self._in_flight: dict[tuple[MountKey, str], asyncio.Future[str]] = {}

    def _key(self, namespace: str | None, mount: str) -> MountKey:
        return (namespace or self.vault.namespace or "", mount)

    def forget(self, namespace: str | None, mount: str) -> None:
        """Drops what is known of a mount (a read there answered 403 or 404)."""
        self._known.pop(self._key(namespace, mount), None)

    def __len__(self) -> int:
        return len(self._known)

    async def check(self, token: VaultToken, source: SourceSpec, *, namespace: str | None) -> None:
        """Returns when `source.mount` is a KV mount of version `source.kv`; else raises SyncError
        (InvalidSpec: not a KV mount, other version, a path inside a mount; PermissionDenied: Vault shows
        this token nothing of the mount)."""
        if source.mount.split("/", 1)[0].lower() in SYSTEM_MOUNTS:
            # The parser refuses these already; callers that build a SourceSpec themselves (doctor) too.
            raise SyncError(
                INVALID_SPEC,
                f"{source.mount_field} {source.mount!r} is (or is under) one of Vault's own mounts, "
                "which a VaultSecret may not read: set it to a KV secrets engine mount",
            )
        key = self._key(namespace, source.mount)
        known = self._known.get(key)
        if known is not None and self._clock() - known[0] < self.ttl and known[1] == source.kv:
            return
        version = await self._lookup(token, source, namespace, key)
        if version != source.kv:
            raise SyncError(
                INVALID_SPEC,
                f"{source.kv_field} is {source.kv}, but the mount {source.mount} is a KV {version} engine: "
                f"set {source.kv_field}: {version}",
            )

    async def _lookup(
        self, token: VaultToken, source: SourceSpec, namespace: str | None, key: MountKey
    ) -> str:
        # One lookup per mount and token at a time; other tokens ask themselves (what Vault shows depends
        # on the token's policies).
        flight = (key, token.accessor or str(id(token)))
        in_flight = self._in_flight.get(flight)
        if in_flight is not None:
            return await asyncio.shield(in_flight)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._in_flight[flight] = future
        try:
            version = await self._ask(token, source, namespace)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(version)
            self._known[key] = (self._clock(), version)
            return version
        finally:
            del self._in_flight[flight]

    async def _ask(self, token: VaultToken, source: SourceSpec, namespace: str | None) -> str:
        mount, field = source.mount, source.mount_field
        info = await self.vault.mount_info(token, mount, namespace=namespace)
        if info is None:
            raise VaultForbidden(
                PERMISSION_DENIED,
                f"Vault denied reading {source.label}: the role's policies must allow 'read' on "
                f"{mount}/{'data/' if source.kv == 'v2' else ''}{source.path} (Vault shows this identity "
                f"no mount at {mount}: check {field} too)",
            )
        path = str(info.get("path") or "")
        if path != f"{mount}/":
            enclosing = path.rstrip("/")
            raise SyncError(
                INVALID_SPEC,
                f"{field} {mount!r} is not a mount but a path inside the mount {enclosing!r}: set {field} "
                f"to {enclosing!r} and put the rest in the path (without KV v2's data/)",
            )
        mount_type = str(info.get("type") or "")
        if mount_type not in KV_TYPES:
            raise SyncError(
                INVALID_SPEC,
                f"{field} {mount!r} is a {mount_type or 'non-KV'} mount, not a KV secrets engine: a "
                f"VaultSecret reads only KV mounts; set {field} to a KV v1 or v2 mount",
            )
        return kv_version_of(info)
