"""`vaultsync doctor`: checks, from where it runs, what a sync needs, and says in plain words what is wrong.

The checks run in the order a sync needs them; each prints one line, `OK`, `FAIL` (what is wrong and what to
do) or `SKIP` (an earlier check failed, or nothing was asked):

1. ``address``: Vault answers at VAULT_ADDR.
2. ``tls``: Vault's certificate is verified with VAULT_CACERT (or the system's CAs); plain http is reported.
3. ``seal``: Vault is initialized and unsealed.
4. ``identity``: the JWT to log in with: a ServiceAccount's token from the TokenRequest API
   (``--namespace`` and ``--service-account``, as a VaultSecret with ``spec.auth.serviceAccountName``), or the
   operator's own token file (VAULTSYNC_TOKEN_FILE). The identity is decided by ``identity_for``, as for a
   VaultSecret (the namespace fence VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES included).
5. ``audience``: the operator's own token is not one the Kubernetes API accepts (its ``aud`` claim is not the
   API server's): Vault, and anyone controlling an auth mount it is sent to, receives it. A FAIL here does
   not stop the later checks.
6. ``login``: the login at the auth mount with the role (VAULTSYNC_AUTH_METHOD/MOUNT/ROLE/AUDIENCE).
7. ``read``: reading ``--path`` (``--mount``, ``--kv``, ``--kv-version``) with that login.

It reuses the operator's own Vault client, identities and token cache, so it fails the way a sync would. It
never prints a token or a secret value: only key names. The Vault token it obtained is revoked at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt

from vaultsync.core.errors import INVALID_SPEC, NOT_FOUND, PERMISSION_DENIED, SyncError
from vaultsync.core.spec import AuthSpec, KvVersion, SourceSpec
from vaultsync.kube.client import ApiError, KubeClient
from vaultsync.kube.credentials import connection
from vaultsync.runtime import token_requester
from vaultsync.settings import Settings
from vaultsync.vault.client import VaultClient, VaultToken
from vaultsync.vault.identity import (
    Identity,
    ServiceAccountJwts,
    TokenFileJwt,
    VaultSessions,
    identity_for,
)
from vaultsync.vault.reader import SecretReader

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"
DOCTOR_TOKEN_SECONDS = 600  # the ServiceAccount token requested for the check; Kubernetes' minimum is 600
# Audiences that kube-apiservers accept by default (--api-audiences defaults to --service-account-issuer,
# which the token's own `iss` gives; these are the issuers that installers commonly set).
API_SERVER_AUDIENCES = frozenset(
    {
        "https://kubernetes.default.svc",
        "https://kubernetes.default.svc.cluster.local",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "api",
        "kubernetes",
    }
)
AUDIENCE_FIX = (
    "mount a projected serviceAccountToken with the audience vault and point VAULTSYNC_TOKEN_FILE at it "
    "(deploy/base/deployment.yaml does: /var/run/secrets/vaultsync/vault-token), and make the Vault role "
    "require it (kubernetes method: audience=vault; jwt method: bound_audiences=vault)"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    message: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<8}  {self.message}"


@dataclass(frozen=True)
class DoctorOptions:
    settings: Settings
    namespace: str | None = None
    service_account: str | None = None
    path: str | None = None
    mount: str | None = None
    kv: KvVersion = "v2"
    kv_version: int | None = None


Report = Callable[[Check], None]


def _claims(token: str) -> dict[str, Any]:
    """The JWT's claims, only to describe it (Vault verifies it); never the token itself."""
    try:
        claims = pyjwt.decode(token, options={"verify_signature": False})
    except pyjwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _describe_jwt(claims: Mapping[str, Any]) -> str:
    parts = [f"subject {claims.get('sub', '(none)')}"]
    audience = claims.get("aud")
    if audience:
        parts.append(f"audience {','.join(audience) if isinstance(audience, list) else audience}")
    expires = claims.get("exp")
    if isinstance(expires, int | float):
        left = expires - time.time()
        parts.append(f"expires in {left / 60:.0f} min" if left > 0 else "EXPIRED")
    return ", ".join(parts)


def audience_problem(claims: Mapping[str, Any]) -> str | None:
    """Why a token with these claims must not be the operator's Vault login (the Kubernetes API accepts it),
    or None. Only the claims: the API server's --api-audiences cannot be read from outside."""
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    if not audiences:
        return (
            "it has no audience (a legacy Secret-based token): the Kubernetes API accepts it, so Vault, and "
            "anyone who controls an auth mount it is sent to, could use it as the operator's ServiceAccount"
        )
    api = set(API_SERVER_AUDIENCES)
    if isinstance(claims.get("iss"), str):
        api.add(claims["iss"])
    shared = sorted(str(a) for a in audiences if a in api)
    if shared:
        return (
            f"its audience {', '.join(shared)} is the Kubernetes API server's: Vault, and anyone who "
            "controls an auth mount it is sent to, could use it as the operator's ServiceAccount against the "
            "cluster"
        )
    return None


def _policy_path(source: SourceSpec) -> str:
    return f"{source.mount}/{'data/' if source.kv == 'v2' else ''}{source.path}"


def _mount_hint(info: Mapping[str, Any] | None, source: SourceSpec) -> str:
    if info is None:
        return ""
    kind = str(info.get("type", ""))
    if kind not in ("kv", "generic"):
        return f"; {source.mount}/ is a {kind or 'non-KV'} mount, not a KV secrets engine"
    options = info.get("options") or {}
    actual = "v2" if str(options.get("version", "1")) == "2" else "v1"
    if actual != source.kv:
        return f"; {source.mount}/ is KV {actual}: set kv: {actual} (--kv {actual})"
    return ""


class Doctor:
    def __init__(self, options: DoctorOptions, report: Report) -> None:
        self.options = options
        self.settings = options.settings
        self._report = report
        self.checks: list[Check] = []

    def add(self, name: str, status: str, message: str) -> None:
        check = Check(name, status, message)
        self.checks.append(check)
        self._report(check)

    def skip_rest(self, names: list[str], why: str) -> None:
        for name in names:
            self.add(name, SKIP, why)

    @property
    def failed(self) -> bool:
        return any(check.status == FAIL for check in self.checks)

    async def run(self) -> list[Check]:
        settings = self.settings
        later = ["address", "tls", "seal", "identity", "audience", "login", "read"]
        if not settings.vault_addr:
            self.add(
                "address",
                FAIL,
                "VAULT_ADDR is not set: give Vault's address, e.g. https://vault.vault.svc:8200",
            )
            self.skip_rest(later[1:], "no Vault address")
            return self.checks
        addr = settings.vault_addr
        https = addr.startswith("https://")
        if not (https or addr.startswith("http://")):
            self.add("address", FAIL, f"VAULT_ADDR {addr} must start with https:// (or http://)")
            self.skip_rest(later[1:], "no usable Vault address")
            return self.checks
        try:
            vault = VaultClient(
                addr,
                cacert=settings.vault_cacert,
                namespace=settings.vault_namespace,
                timeout=settings.vault_timeout,
            )
        except SyncError as exc:
            self.add("address", SKIP, "not contacted: the CA bundle must load first")
            self.add("tls", FAIL, f"{exc.message}: it must be a readable PEM file of CA certificates")
            self.skip_rest(later[2:], "the Vault CA bundle does not load")
            return self.checks
        kube: KubeClient | None = None
        sessions: VaultSessions | None = None
        try:
            health = await self._address_and_tls(vault, https)
            if health is None:
                self.skip_rest(later[2:], "Vault cannot be reached")
                return self.checks
            if not self._seal(*health):
                self.skip_rest(later[3:], "Vault is not unsealed")
                return self.checks
            kube = KubeClient(connection)
            sessions = VaultSessions(
                vault,
                TokenFileJwt(settings.token_file),
                ServiceAccountJwts(token_requester(kube), DOCTOR_TOKEN_SECONDS),
            )
            found = await self._identity(sessions)
            if found is None:
                self.skip_rest(later[4:], "no JWT to log in with")
                return self.checks
            identity, jwt = found
            self._audience(identity, jwt)
            logged_in = await self._login(sessions, identity)
            if logged_in is None:
                self.skip_rest(later[6:], "the login failed")
                return self.checks
            await self._read(sessions, identity, logged_in)
        finally:
            if sessions is not None:
                await sessions.close()  # revokes the token the checks obtained
            await vault.close()
            if kube is not None:
                await kube.close()
        return self.checks

    async def _address_and_tls(self, vault: VaultClient, https: bool) -> tuple[int, Mapping[str, Any]] | None:
        settings = self.settings
        try:
            status, body = await vault.health_detail()
        except SyncError as exc:
            if exc.message.startswith("TLS verification"):
                self.add("address", OK, f"a server answers at {vault.addr}")
                self.add(
                    "tls",
                    FAIL,
                    f"{exc.message.split(';')[0]}; set VAULT_CACERT to the CA bundle that signed Vault's "
                    "certificate, and check that VAULT_ADDR's host name is one the certificate names",
                )
            elif exc.message.startswith("TLS"):
                self.add("address", OK, f"a server answers at {vault.addr}")
                self.add(
                    "tls",
                    FAIL,
                    f"{exc.message.split(';')[0]}; is Vault serving https at this address (VAULT_ADDR's "
                    "scheme: http:// for a listener without TLS)? is VAULT_CACERT a CA bundle?",
                )
            else:
                self.add(
                    "address",
                    FAIL,
                    f"{exc.message.split(';')[0]}: check VAULT_ADDR (scheme, host, port), that Vault is "
                    "running, and that this place may reach it (DNS, NetworkPolicy, firewall, proxy)",
                )
                self.add("tls", SKIP, "Vault cannot be reached")
            return None
        if status not in (200, 429, 472, 473, 501, 503) or "initialized" not in body:
            self.add(
                "address",
                FAIL,
                f"the server at {vault.addr} answered HTTP {status} to /v1/sys/health, which is not Vault's "
                "answer: check VAULT_ADDR (is it Vault's API address? https rather than http?)",
            )
            self.add("tls", SKIP, "the address is not Vault's")
            return None
        version = body.get("version")
        self.add(
            "address", OK, f"Vault answers at {vault.addr}" + (f" (version {version})" if version else "")
        )
        if not https:
            self.add(
                "tls",
                OK,
                "not used: VAULT_ADDR is http://, so tokens and secrets cross the network unencrypted "
                "(use https outside a test setup)",
            )
        elif settings.vault_cacert:
            self.add("tls", OK, f"Vault's certificate is verified with VAULT_CACERT {settings.vault_cacert}")
        else:
            self.add("tls", OK, "Vault's certificate is verified with the system's CA store")
        return status, body

    def _seal(self, status: int, body: Mapping[str, Any]) -> bool:
        if status == 501 or body.get("initialized") is False:
            self.add("seal", FAIL, "Vault is not initialized: initialize it (`vault operator init`)")
            return False
        if status == 503 or body.get("sealed"):
            self.add(
                "seal",
                FAIL,
                "Vault is sealed: nothing can be logged in to or read until it is unsealed "
                "(`vault operator unseal`, or its auto-unseal); VaultSecrets show VaultUnavailable meanwhile "
                "and keep their Secrets as they are",
            )
            return False
        if status == 429 or body.get("standby"):
            self.add("seal", OK, "unsealed (this node is a standby; it forwards requests to the active node)")
        else:
            self.add("seal", OK, "unsealed and active")
        return True

    async def _identity(self, sessions: VaultSessions) -> tuple[Identity, str] | None:
        settings, options = self.settings, self.options
        if options.service_account is not None and not options.namespace:
            self.add("identity", FAIL, "--service-account needs --namespace (the ServiceAccount's namespace)")
            return None
        auth = AuthSpec(
            service_account_name=options.service_account,
            role=None,
            method=None,
            mount=None,
            audience=None,
            vault_namespace=None,
        )
        try:
            identity = identity_for(options.namespace, auth, settings)
        except SyncError as exc:
            self.add("identity", FAIL, f"{exc.message} (check such a login with --service-account)")
            return None
        try:
            resolved, jwt = await sessions.resolve(identity)
        except SyncError as exc:
            self.add("identity", FAIL, exc.message)
            return None
        except ApiError as exc:
            self.add(
                "identity",
                FAIL,
                f"cannot request a token for ServiceAccount {options.namespace}/{options.service_account}: "
                f"{exc}; check KUBECONFIG (or the in-cluster config) and the RBAC for serviceaccounts/token",
            )
            return None
        except Exception as exc:  # e.g. no kubeconfig at all
            self.add(
                "identity",
                FAIL,
                f"cannot reach the Kubernetes API ({type(exc).__name__}): set KUBECONFIG, or run this in "
                "a pod",
            )
            return None
        claims = _claims(jwt)
        if isinstance(claims.get("exp"), int | float) and claims["exp"] < time.time():
            self.add(
                "identity",
                FAIL,
                f"the token in {settings.token_file} has expired: in a pod the kubelet refreshes it; "
                "elsewhere write a fresh one (`kubectl create token ...`)",
            )
            return None
        if identity.is_default:
            where = f"the operator's own token file {settings.token_file}"
        else:
            where = f"ServiceAccount {options.namespace}/{options.service_account} (TokenRequest API)"
        self.add("identity", OK, f"{where}: {_describe_jwt(claims)}")
        return resolved, jwt

    def _audience(self, identity: Identity, jwt: str) -> None:
        if not identity.is_default:
            self.add(
                "audience",
                SKIP,
                "checked for the operator's own token file only (this token's audience is "
                "VAULTSYNC_AUTH_AUDIENCE, else the API server's)",
            )
            return
        problem = audience_problem(_claims(jwt))
        if problem is None:
            self.add("audience", OK, "the operator's own token is not valid for the Kubernetes API server")
        else:
            self.add("audience", FAIL, f"the token in {self.settings.token_file}: {problem}; {AUDIENCE_FIX}")

    async def _login(self, sessions: VaultSessions, identity: Identity) -> VaultToken | None:
        try:
            _, token = await sessions.token(identity)
        except SyncError as exc:
            # The message says what to fix (vault/identity.py words Vault's refusal for the identity).
            self.add("login", FAIL, exc.message)
            return None
        policies = ", ".join(token.policies) or "(none)"
        ttl = f"; TTL {token.lease_duration:.0f}s" if token.lease_duration else ""
        self.add(
            "login",
            OK,
            f"logged in at auth/{identity.mount} (method {identity.method}) as role "
            f"{identity.role or '(none)'}; policies: {policies}{ttl}",
        )
        return token

    async def _read(self, sessions: VaultSessions, identity: Identity, token: VaultToken) -> None:
        options = self.options
        if not options.path:
            self.add("read", SKIP, "no --path given")
            return
        source = SourceSpec(
            mount=options.mount or self.settings.default_mount,
            path=options.path.strip("/"),
            kv=options.kv,
            version=options.kv_version,
        )
        reader = SecretReader(sessions)
        try:
            result = await reader.read(identity, source, fresh=True)
        except SyncError as exc:
            hint = ""
            if exc.reason in (NOT_FOUND, PERMISSION_DENIED, INVALID_SPEC):
                try:
                    info = await sessions.vault.mount_info(
                        token, source.mount, namespace=identity.vault_namespace
                    )
                except SyncError:
                    info = None
                hint = _mount_hint(info, source)
            if exc.reason == PERMISSION_DENIED and not hint:
                hint = (
                    f"; the login's policies are {', '.join(token.policies) or '(none)'}: one of them needs "
                    f'`path "{_policy_path(source)}" {{ capabilities = ["read"] }}`'
                )
            self.add("read", FAIL, f"{exc.reason}: {exc.message}{hint}")
            return
        keys = sorted(result.data)
        shown = ", ".join(keys) if keys else "(no keys)"
        version = f", version {result.version}" if result.version else ""
        self.add(
            "read",
            OK,
            f"read {source.label} (KV {source.kv}{version}): {len(keys)} key(s): {shown}",
        )


def run_doctor(options: DoctorOptions, report: Report) -> int:
    """Runs every check, reporting each as it completes; 0 when none failed, else 1."""
    doctor = Doctor(options, report)
    asyncio.run(doctor.run())
    return 1 if doctor.failed else 0
