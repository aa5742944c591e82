"""Who logs in to Vault: identities, the JWTs that prove them, and the cache of Vault tokens per identity.

A login happens once per identity and token lifetime, never per sync: tokens are cached, renewed before they
expire, re-obtained when renewal fails or Vault stops accepting them, and revoked when no sync used them for
a whole token lifetime (evicted) and when the operator stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import jwt as pyjwt

from vaultsync.core.errors import AUTH_FAILED, SyncError
from vaultsync.vault.client import LoginRefused, VaultClient, VaultToken, outcome_of

logger = logging.getLogger(__name__)

RENEW_AT_FRACTION = 2 / 3
MIN_RENEW_LEAD = 2.0


@dataclass(frozen=True)
class Identity:
    """Everything that decides what a Vault login may read: the cache key of Vault tokens."""

    method: str
    mount: str
    role: str | None
    vault_namespace: str | None
    sa_namespace: str | None = None
    sa_name: str | None = None
    sa_uid: str | None = None
    audience: str | None = None

    @property
    def is_default(self) -> bool:
        return self.sa_name is None

    def describe(self) -> str:
        who = (
            "the operator's own identity"
            if self.is_default
            else f"ServiceAccount {self.sa_namespace}/{self.sa_name}"
        )
        return f"{who} (auth/{self.mount}, method {self.method}, role {self.role or '(none)'})"


@dataclass
class _Jwt:
    token: str
    expires_at: float
    uid: str | None


def _claims(token: str) -> dict[str, object]:
    # The JWT is only inspected for its expiry and ServiceAccount uid; Vault verifies it.
    try:
        claims = pyjwt.decode(token, options={"verify_signature": False})
    except pyjwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _sa_uid(claims: dict[str, object]) -> str | None:
    kube = claims.get("kubernetes.io")
    if isinstance(kube, dict):
        sa = kube.get("serviceaccount")
        if isinstance(sa, dict) and isinstance(sa.get("uid"), str):
            return str(sa["uid"])
    uid = claims.get("kubernetes.io/serviceaccount/service-account.uid")
    return uid if isinstance(uid, str) else None


def login_refused_message(identity: Identity, refused: LoginRefused) -> str:
    """What to fix when Vault refuses a login, from Vault's own words (which never hold the JWT)."""
    role, mount = identity.role or "(none)", identity.mount
    who = (
        "the operator's own ServiceAccount"
        if identity.is_default
        else f"ServiceAccount {identity.sa_namespace}/{identity.sa_name}"
    )
    detail = refused.detail.lower()
    if "missing role" in detail:
        hint = "no Vault role was given: set spec.auth.role or the setting VAULTSYNC_AUTH_ROLE"
    elif "invalid role name" in detail or "could not be found" in detail:
        hint = (
            f"role {role} does not exist at auth/{mount}: create it in Vault, or fix spec.auth.role "
            "(default: the setting VAULTSYNC_AUTH_ROLE)"
        )
    elif "not authorized" in detail or "bound claim" in detail or "subject" in detail:
        hint = (
            f"role {role} does not bind {who}: bind it in Vault (kubernetes method: "
            "bound_service_account_names and bound_service_account_namespaces; jwt method: bound_subject), "
            "or set spec.auth.role to a role that binds it"
        )
    elif "aud" in detail:
        hint = (
            f"role {role} does not accept the token's audience: set spec.auth.audience (default: the setting "
            "VAULTSYNC_AUTH_AUDIENCE) to the role's audience (kubernetes method) or one of its "
            "bound_audiences (jwt method)"
        )
    elif refused.status == 403 and detail == "permission denied":
        hint = (
            f"no auth method accepts logins at auth/{mount}: fix spec.auth.mount (default: the setting "
            f"VAULTSYNC_AUTH_MOUNT), or enable and configure the {identity.method} auth method there"
        )
    elif "lookup failed" in detail or "tokenreview" in detail or "token review" in detail:
        hint = (
            f"Vault could not check the token with the Kubernetes TokenReview API: check auth/{mount}/config "
            "(kubernetes_host, kubernetes_ca_cert, token_reviewer_jwt; the reviewer needs the ClusterRole "
            "system:auth-delegator)"
        )
    elif "validating token" in detail or "signature" in detail or "issuer" in detail:
        hint = (
            f"Vault could not validate the token: check auth/{mount}/config (jwt_validation_pubkeys must "
            "hold the cluster's service-account public key, bound_issuer the API server's issuer)"
        )
    else:
        hint = f"Vault refused the login at auth/{mount} (role {role})"
    return f"{identity.describe()}: {hint} (Vault: {refused.detail})"


class TokenFileJwt:
    """The operator's own service-account JWT, re-read whenever the file changes (projected tokens rotate)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._token = ""

    def read(self) -> str:
        try:
            stat = os.stat(self.path)
            # The kubelet swaps a new file in (new inode); an in-place rewrite changes mtime or size.
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if stamp != self._stamp:
                with open(self.path, encoding="utf-8") as handle:
                    self._token = handle.read().strip()
                self._stamp = stamp
        except OSError as exc:
            raise SyncError(
                AUTH_FAILED,
                f"cannot read the operator's service-account token file {self.path} ({exc.strerror}); "
                "set VAULTSYNC_TOKEN_FILE or mount the service-account token",
            ) from None
        if not self._token:
            raise SyncError(AUTH_FAILED, f"the operator's service-account token file {self.path} is empty")
        return self._token


TokenRequester = Callable[[str, str, str | None, int], Awaitable[tuple[str, float]]]
"""(namespace, service account, audience, seconds) -> (jwt, expiry as a wall-clock timestamp)."""


class ServiceAccountJwts:
    """TokenRequest tokens per (namespace, ServiceAccount, audience), cached for most of their lifetime."""

    def __init__(self, request: TokenRequester, ttl_seconds: int) -> None:
        self._request = request
        self._ttl = ttl_seconds
        self._cache: dict[tuple[str, str, str | None], _Jwt] = {}
        self._locks: dict[tuple[str, str, str | None], asyncio.Lock] = {}

    def __len__(self) -> int:
        return len(self._cache)

    async def get(self, namespace: str, name: str, audience: str | None) -> _Jwt:
        key = (namespace, name, audience)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if cached and time.time() < cached.expires_at - self._ttl * 0.2:
                return cached
            token, expires_at = await self._request(namespace, name, audience, self._ttl)
            entry = _Jwt(token=token, expires_at=expires_at, uid=_sa_uid(_claims(token)))
            self._cache[key] = entry
            return entry

    def forget(self, namespace: str, name: str, audience: str | None) -> None:
        self._cache.pop((namespace, name, audience), None)


LoginObserver = Callable[[Identity, str, str, float], None]
"""(identity, operation: login or renew, outcome: see `outcome_of`, seconds the request took)."""


class VaultSessions:
    """Vault tokens per identity: one login per identity and token lifetime, shared by every sync."""

    def __init__(
        self,
        vault: VaultClient,
        own_jwt: TokenFileJwt,
        sa_jwts: ServiceAccountJwts,
        on_request: LoginObserver | None = None,
    ) -> None:
        self.vault = vault
        self.own_jwt = own_jwt
        self.sa_jwts = sa_jwts
        self._tokens: dict[Identity, VaultToken] = {}
        self._last_used: dict[Identity, float] = {}
        self._locks: dict[Identity, asyncio.Lock] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._on_request = on_request or (lambda identity, operation, outcome, seconds: None)

    def __len__(self) -> int:
        return len(self._tokens)

    async def resolve(self, identity: Identity) -> tuple[Identity, str]:
        """The identity completed with the ServiceAccount's uid, and the JWT to log in with."""
        if identity.is_default:
            return identity, self.own_jwt.read()
        assert identity.sa_namespace and identity.sa_name
        entry = await self.sa_jwts.get(identity.sa_namespace, identity.sa_name, identity.audience)
        return Identity(**{**identity.__dict__, "sa_uid": entry.uid}), entry.token

    async def token(self, identity: Identity) -> tuple[Identity, VaultToken]:
        identity, jwt = await self.resolve(identity)
        self._last_used[identity] = time.monotonic()
        lock = self._locks.setdefault(identity, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(identity)
            if cached is not None and time.monotonic() < cached.expires_at - MIN_RENEW_LEAD:
                return identity, cached
            started = time.monotonic()
            try:
                token = await self.vault.login(
                    mount=identity.mount, role=identity.role, jwt=jwt, namespace=identity.vault_namespace
                )
            except SyncError as exc:
                self._on_request(identity, "login", outcome_of(exc), time.monotonic() - started)
                if isinstance(exc, LoginRefused):
                    if not identity.is_default and identity.sa_namespace and identity.sa_name:
                        # The cached JWT may be stale (e.g. the ServiceAccount was re-created): ask anew.
                        self.sa_jwts.forget(identity.sa_namespace, identity.sa_name, identity.audience)
                    raise SyncError(AUTH_FAILED, login_refused_message(identity, exc)) from None
                if exc.reason == AUTH_FAILED:
                    raise SyncError(AUTH_FAILED, f"{identity.describe()}: {exc.message}") from None
                raise
            self._on_request(identity, "login", "ok", time.monotonic() - started)
            logger.info("logged in to Vault as %s", identity.describe())
            self._tokens[identity] = token
            return identity, token

    def invalidate(self, identity: Identity, token: VaultToken) -> None:
        """Drops a token that Vault no longer accepts (only if it is still the cached one)."""
        if self._tokens.get(identity) is token:
            del self._tokens[identity]
        if not identity.is_default and identity.sa_namespace and identity.sa_name:
            self.sa_jwts.forget(identity.sa_namespace, identity.sa_name, identity.audience)

    async def token_is_valid(self, identity: Identity, token: VaultToken) -> bool:
        return await self.vault.lookup_self(token, namespace=identity.vault_namespace)

    def start_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_loop(), name="vault-token-renewer")

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for identity, token in list(self._tokens.items()):
                if token.lease_duration <= 0:
                    continue
                renew_at = token.obtained_at + token.lease_duration * RENEW_AT_FRACTION
                if now < renew_at:
                    continue
                if not token.renewable or now >= token.expires_at - MIN_RENEW_LEAD:
                    # Not renewable (or about to lapse): the next use logs in again.
                    self._tokens.pop(identity, None)
                    continue
                if now - self._last_used.get(identity, token.obtained_at) >= token.lease_duration:
                    # No sync used it for a whole token lifetime (its VaultSecrets are gone, or rarely due):
                    # revoke it rather than keep a credential alive. The next use logs in again.
                    self._tokens.pop(identity, None)
                    self._last_used.pop(identity, None)
                    with contextlib.suppress(SyncError):
                        await self.vault.revoke_self(token, namespace=identity.vault_namespace)
                    logger.info("revoked the unused Vault token of %s", identity.describe())
                    continue
                started = time.monotonic()
                try:
                    renewed = await self.vault.renew_self(token, namespace=identity.vault_namespace)
                except SyncError as exc:
                    self._on_request(identity, "renew", outcome_of(exc), time.monotonic() - started)
                    if self._tokens.get(identity) is token:
                        del self._tokens[identity]
                    continue
                self._on_request(identity, "renew", "ok", time.monotonic() - started)
                # A renewal capped by the role's max TTL may not extend the lease; re-login when it lapses.
                if renewed.lease_duration < MIN_RENEW_LEAD * 2:
                    self._tokens.pop(identity, None)
                elif self._tokens.get(identity) is token:
                    self._tokens[identity] = renewed

    async def close(self) -> None:
        """Stops renewing and revokes every cached token."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None
        tokens = list(self._tokens.items())
        self._tokens.clear()
        results = await asyncio.gather(
            *(
                self.vault.revoke_self(token, namespace=identity.vault_namespace)
                for identity, token in tokens
            ),
            return_exceptions=True,
        )
        revoked = sum(1 for result in results if not isinstance(result, BaseException))
        if tokens:
            logger.info("revoked %d of %d cached Vault tokens", revoked, len(tokens))
