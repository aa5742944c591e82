"""Reads KV secrets as an identity, sharing reads of the same secret that fall due together.

Reads are keyed by (identity, mount, path, kv, version): concurrent requests for one key are made once, and
the result is shared for a short moment so that syncs due together (fan-in sources, many VaultSecrets on one
path) cost one Vault read. A 403 on a token that Vault no longer accepts logs in again once.

Before the first read of a mount, `MountChecker` makes sure it is a KV mount of the stated version: nothing
but KV data is ever read for a VaultSecret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from vaultsync.core.errors import NOT_FOUND, SyncError
from vaultsync.core.spec import SourceSpec
from vaultsync.vault.client import KVSecret, VaultForbidden, outcome_of
from vaultsync.vault.identity import Identity, VaultSessions
from vaultsync.vault.mounts import MountChecker

ReadKey = tuple[Identity, str, str, str, int | None]
ReadObserver = Callable[[str, float], None]


class SecretReader:
    def __init__(
        self,
        sessions: VaultSessions,
        *,
        share_seconds: float = 1.0,
        on_read: ReadObserver | None = None,
        mounts: MountChecker | None = None,
    ) -> None:
        self.sessions = sessions
        self.mounts = mounts or MountChecker(sessions.vault)
        self.share_seconds = share_seconds
        self._in_flight: dict[ReadKey, asyncio.Future[KVSecret]] = {}
        self._recent: dict[ReadKey, tuple[float, KVSecret]] = {}
        self._pruned_at = 0.0
        self._on_read = on_read or (lambda outcome, seconds: None)

    async def read(self, identity: Identity, source: SourceSpec, *, fresh: bool = False) -> KVSecret:
        """Reads one source; `fresh` skips results shared from a moment ago (forced refreshes)."""
        resolved, _ = await self.sessions.token(identity)
        key: ReadKey = (resolved, source.mount, source.path, source.kv, source.version)
        recent = self._recent.get(key)
        now = time.monotonic()
        if not fresh and recent is not None and now - recent[0] < self.share_seconds:
            return recent[1]
        in_flight = self._in_flight.get(key)
        if in_flight is not None:
            return await asyncio.shield(in_flight)
        future: asyncio.Future[KVSecret] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await self._read_once(identity, source)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(result)
            self._recent[key] = (time.monotonic(), result)
            self._prune(now)
            return result
        finally:
            del self._in_flight[key]

    def _prune(self, now: float) -> None:
        # A full pass at most once per share_seconds: one per read would make a burst of reads quadratic.
        if len(self._recent) > 256 and now - self._pruned_at >= self.share_seconds:
            self._pruned_at = now
            for key, (at, _) in list(self._recent.items()):
                if now - at >= self.share_seconds:
                    del self._recent[key]

    async def _read_once(self, identity: Identity, source: SourceSpec) -> KVSecret:
        for attempt in (1, 2):
            resolved, token = await self.sessions.token(identity)
            namespace = resolved.vault_namespace
            started = time.monotonic()
            try:
                await self.mounts.check(token, source, namespace=namespace)
                started = time.monotonic()
                result = await self.sessions.vault.read_kv(
                    token,
                    mount=source.mount,
                    path=source.path,
                    kv=source.kv,
                    version=source.version,
                    namespace=namespace,
                )
            except VaultForbidden as exc:
                # A 403 on the mount lookup or the read: the mount is checked again next time (it may have
                # been replaced), and the token, which Vault may no longer accept, once now.
                self.mounts.forget(namespace, source.mount)
                self._on_read(outcome_of(exc), time.monotonic() - started)
                if attempt == 1 and not await self.sessions.token_is_valid(resolved, token):
                    self.sessions.invalidate(resolved, token)
                    continue
                raise
            except Exception as exc:
                if isinstance(exc, SyncError) and exc.reason == NOT_FOUND:
                    self.mounts.forget(namespace, source.mount)
                self._on_read(outcome_of(exc), time.monotonic() - started)
                raise
            self._on_read("ok", time.monotonic() - started)
            return result
        raise AssertionError("unreachable")

    def forget(self) -> None:
        """Drops shared results (e.g. after a forced refresh)."""
        self._recent.clear()
