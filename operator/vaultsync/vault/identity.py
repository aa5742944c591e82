"""Who logs in to Vault: identities, the JWTs that prove them, and the cache of Vault tokens per identity.

A login happens once per identity and token lifetime, never per sync: tokens are cached, renewed before they
expire, re-obtained when renewal fails or Vault stops accepting them, and revoked when no sync used them for
a whole token lifetime (evicted) and when the operator stops. A failed login (or TokenRequest) is shared by
every sync of that identity: until the identity's own backoff has passed, they all get the same error at
once, without a request, so N VaultSecrets on a broken identity cost one attempt per backoff step, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import jwt as pyjwt

from vaultsync.core.errors import AUTH_FAILED, INVALID_SPEC, SyncError
from vaultsync.core.spec import AuthSpec
from vaultsync.settings import Settings
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


OVERRIDES_SETTING = "VAULTSYNC_ALLOW_DEFAULT_IDENTITY_OVERRIDES"


def identity_for(namespace: str | None, auth: AuthSpec, settings: Settings) -> Identity:
    """The identity a VaultSecret of `namespace` logs in as: the one decision, shared by the engine and
    `vaultsync doctor` (`namespace` None: the doctor without --namespace, no namespace fence to check).

    - `spec.auth.serviceAccountName` set: that ServiceAccount of the VaultSecret's own namespace; every other
      `spec.auth` field falls back to the operator's setting.
    - Unset: the operator's own identity. The namespace must be allowed by
      VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES (AuthFailed otherwise). Its login is the operator's settings:
      a VaultSecret that picks another method, mount, role or Vault namespace would send the operator's own
      JWT to an auth mount of its choosing, so that is InvalidSpec unless VAULTSYNC_ALLOW_DEFAULT_IDENTITY_
      OVERRIDES is true (a value equal to the setting changes nothing and is accepted). `spec.auth.audience`
      is InvalidSpec either way: the operator's own token comes from a file whose audience is fixed.
    """
    if auth.service_account_name is not None:
        if namespace is None:
            raise ValueError("a ServiceAccount identity needs the VaultSecret's namespace")
        return Identity(
            method=auth.method or settings.auth_method,
            mount=auth.mount or settings.auth_mount,
            role=auth.role or settings.auth_role,
            vault_namespace=auth.vault_namespace or settings.vault_namespace,
            sa_namespace=namespace,
            sa_name=auth.service_account_name,
            audience=auth.audience or settings.auth_audience,
        )
    if namespace is not None and not settings.default_identity_allowed(namespace):
        raise SyncError(
            AUTH_FAILED,
            f"namespace {namespace} may not use the operator's own Vault identity "
            "(VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES); set spec.auth.serviceAccountName to a ServiceAccount "
            "of this namespace that a Vault role binds",
        )
    if auth.audience is not None:
        raise SyncError(
            INVALID_SPEC,
            "spec.auth.audience applies only with spec.auth.serviceAccountName: the operator's own Vault "
            "identity logs in with its token file (VAULTSYNC_TOKEN_FILE), whose audience is fixed; remove "
            "spec.auth.audience, or set spec.auth.serviceAccountName to a ServiceAccount of this namespace",
        )
    chosen = {
        "spec.auth.method": (auth.method, settings.auth_method),
        "spec.auth.mount": (auth.mount, settings.auth_mount),
        "spec.auth.role": (auth.role, settings.auth_role),
        "spec.auth.vaultNamespace": (auth.vault_namespace, settings.vault_namespace),
    }
    overrides = [name for name, (value, setting) in chosen.items() if value is not None and value != setting]
    if overrides and not settings.allow_default_identity_overrides:
        fields = " and ".join(overrides)
        raise SyncError(
            INVALID_SPEC,
            f"{fields} may not be set without spec.auth.serviceAccountName: the operator's own Vault "
            "identity logs in only as the operator is configured; set spec.auth.serviceAccountName to a "
            f"ServiceAccount of this namespace that a Vault role binds, or ask the operator's admin to allow "
            f"it with {OVERRIDES_SETTING}=true",
        )
    return Identity(
        method=auth.method or settings.auth_method,
        mount=auth.mount or settings.auth_mount,
        role=auth.role or settings.auth_role,
        vault_namespace=auth.vault_namespace or settings.vault_namespace,
    )


def backoff_delay(failures: int, base: float, maximum: float) -> float:
    """Exponential backoff with jitter: about base x 2^(failures-1), capped at maximum. The jitter applies
    at the cap too (0.8-1.0 x maximum), so that retries never fall into lockstep."""
    step = base * 2.0 ** min(max(failures - 1, 0), 30) * random.uniform(0.8, 1.2)
    return min(maximum * random.uniform(0.8, 1.0), step)


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
    elif "aud" in detail and identity.is_default:
        hint = (
            f"role {role} does not accept the audience of the operator's token file (VAULTSYNC_TOKEN_FILE): "
            "the file should hold the projected token of audience vault that deploy/ mounts, and the role "
            "should require that audience (kubernetes method: audience=vault; jwt method: "
            "bound_audiences=vault)"
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


@dataclass
class _Failure:
    """The last failed attempt of an identity: shared by every sync until `retry_at`."""

    reason: str
    message: str
    count: int
    retry_at: float


def _attempt_key(identity: Identity) -> Identity:
    # What a sync asks for (the ServiceAccount's uid is only known once its token is there).
    return dataclasses.replace(identity, sa_uid=None) if identity.sa_uid is not None else identity


class VaultSessions:
    """Vault tokens per identity: one login per identity and token lifetime, shared by every sync; failed
    attempts shared too, with a backoff per identity (`backoff_base` doubling up to `backoff_max`)."""

    def __init__(
        self,
        vault: VaultClient,
        own_jwt: TokenFileJwt,
        sa_jwts: ServiceAccountJwts,
        on_request: LoginObserver | None = None,
        *,
        backoff_base: float = 2.0,
        backoff_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.vault = vault
        self.own_jwt = own_jwt
        self.sa_jwts = sa_jwts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._clock = clock
        self._tokens: dict[Identity, VaultToken] = {}
        self._last_used: dict[Identity, float] = {}
        self._locks: dict[Identity, asyncio.Lock] = {}
        self._failures: dict[Identity, _Failure] = {}
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

    def backing_off(self, identity: Identity) -> bool:
        """Whether the identity's last attempt failed and its backoff has not passed yet."""
        failure = self._failures.get(_attempt_key(identity))
        return failure is not None and self._clock() < failure.retry_at

    def _check_backoff(self, key: Identity) -> None:
        failure = self._failures.get(key)
        if failure is not None and self._clock() < failure.retry_at:
            # A new error each time: one instance raised in many tasks would share (and grow) a traceback.
            raise SyncError(failure.reason, failure.message)

    def _failed(self, key: Identity, error: SyncError) -> SyncError:
        previous = self._failures.get(key)
        count = (previous.count if previous else 0) + 1
        delay = backoff_delay(count, self.backoff_base, self.backoff_max)
        self._failures[key] = _Failure(error.reason, error.message, count, self._clock() + delay)
        logger.info(
            "%s: %s; its VaultSecrets fail at once with this error, next attempt in %.0fs (failure %d)",
            key.describe(),
            error.reason,
            delay,
            count,
        )
        return error

    async def token(self, identity: Identity) -> tuple[Identity, VaultToken]:
        key = _attempt_key(identity)
        self._check_backoff(key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            # Syncs that waited here while an attempt failed get its error, not an attempt of their own.
            self._check_backoff(key)
            try:
                resolved, token = await self._token_once(identity)
            except SyncError as exc:
                raise self._failed(key, exc) from None
            if self._failures.pop(key, None) is not None:
                logger.info("%s: logged in again after failures", key.describe())
            return resolved, token

    async def _token_once(self, identity: Identity) -> tuple[Identity, VaultToken]:
        identity, jwt = await self.resolve(identity)
        self._last_used[identity] = time.monotonic()
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
