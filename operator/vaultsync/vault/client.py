"""A small asynchronous client for the parts of the Vault HTTP API the operator uses.

Logins (kubernetes and jwt auth methods share one request shape), token renewal and revocation, and KV v1/v2
reads. Every failure becomes a `SyncError` with a stable reason and a message that never holds a token or a
secret value: Vault's own error strings describe the request, not the data.

Requests can reach only the endpoint they name: every path segment taken from a spec is percent-encoded
(`encode_path`) and the URL is handed to aiohttp already encoded, so neither yarl nor aiohttp decodes `%2e`
or drops dot segments again; redirects are never followed; answers are read up to `MAX_RESPONSE_BYTES`.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from vaultsync.core.errors import (
    AUTH_FAILED,
    INVALID_DATA,
    INVALID_SPEC,
    NOT_FOUND,
    PERMISSION_DENIED,
    VAULT_UNAVAILABLE,
    SyncError,
)

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""The most of one Vault answer that is read (a Kubernetes Secret holds at most 1 MiB)."""
_CHUNK = 64 * 1024
_BIG_BODY = 256 * 1024
"""Answers larger than this are parsed in a worker thread, one at a time: parsing 4 MiB of nested JSON takes
tens to hundreds of milliseconds and up to ~20 times its size in Python objects."""


def encode_path(*parts: str) -> str:
    """A Vault API path (without /v1/) from `parts`, each split on '/' and every segment percent-encoded
    (`quote(segment, safe="")`: '%', '?', '#', ';', '+', spaces and non-ASCII all become %XX).

    An empty, '.' or '..' segment is refused (ValueError) rather than sent: the spec parser refuses them
    already, this keeps any other caller from building a request that a server would normalise."""
    segments = [segment for part in parts for segment in part.split("/")]
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError("a Vault path has an empty, '.' or '..' segment")
    return "/".join(quote(segment, safe="") for segment in segments)


@dataclass(frozen=True)
class VaultToken:
    """A Vault client token and what is known of its lifetime."""

    client_token: str
    accessor: str
    lease_duration: float
    renewable: bool
    obtained_at: float
    policies: tuple[str, ...] = ()

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.lease_duration if self.lease_duration else float("inf")

    def __repr__(self) -> str:  # never show the token itself
        return f"VaultToken(accessor={self.accessor!r}, lease_duration={self.lease_duration})"


@dataclass(frozen=True)
class KVSecret:
    """What one KV read returned: the data and, for KV v2, its version metadata."""

    data: Mapping[str, Any]
    version: int | None
    created_time: str | None

    def __repr__(self) -> str:  # never show the values
        return f"KVSecret(keys={sorted(self.data)!r}, version={self.version})"


class VaultForbidden(SyncError):
    """Vault answered 403: the token lacks the policy, or the token is no longer valid."""


class LoginRefused(SyncError):
    """Vault refused a login (4xx). `status` and Vault's own `detail` let the caller, which knows the
    identity, say what to fix."""

    def __init__(self, message: str, *, status: int, detail: str) -> None:
        super().__init__(AUTH_FAILED, message)
        self.status = status
        self.detail = detail


def outcome_of(error: BaseException | None) -> str:
    """The `outcome` of a Vault request for metrics: ok, denied, not_found, unavailable or error."""
    if error is None:
        return "ok"
    reason = getattr(error, "reason", None)
    if reason in (AUTH_FAILED, PERMISSION_DENIED):
        return "denied"
    if reason == NOT_FOUND:
        return "not_found"
    if reason == VAULT_UNAVAILABLE:
        return "unavailable"
    return "error"


def _ssl_context(cacert: str | None) -> ssl.SSLContext | None:
    if not cacert:
        return None
    try:
        return ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        raise SyncError(
            VAULT_UNAVAILABLE,
            f"cannot load the Vault CA bundle {cacert} ({type(exc).__name__}): check VAULT_CACERT",
            retryable=True,
        ) from None


def _token(client_token: str, accessor: str, auth: Mapping[str, Any]) -> VaultToken:
    return VaultToken(
        client_token=client_token,
        accessor=accessor,
        lease_duration=float(auth.get("lease_duration") or 0),
        renewable=bool(auth.get("renewable")),
        obtained_at=time.monotonic(),
        policies=tuple(str(policy) for policy in auth.get("policies") or ()),
    )


def _errors_text(body: Any) -> str:
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)[:300]
    return ""


def _tls_problem(exc: aiohttp.ClientConnectorCertificateError) -> str:
    problem = exc.certificate_error
    return str(getattr(problem, "verify_message", "") or type(problem).__name__)


class VaultClient:
    """One aiohttp session to one Vault address, shared by every identity."""

    def __init__(
        self,
        addr: str,
        *,
        cacert: str | None = None,
        namespace: str | None = None,
        timeout: float = 10.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.addr = addr.rstrip("/")
        self._base = URL(self.addr)
        self.namespace = namespace
        self.max_response_bytes = max_response_bytes
        self._ssl = _ssl_context(cacert) if addr.startswith("https") else None
        self._cacert = cacert
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._big_parses = asyncio.Semaphore(1)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=64, ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, path: str, query: Mapping[str, str] | None = None) -> URL:
        """The URL of an API path that `encode_path` made, taken as already encoded (never re-normalised)."""
        url = self._base.with_path(f"{self._base.raw_path.rstrip('/')}/v1/{path}", encoded=True)
        return url.with_query(query) if query else url

    async def _read_json(self, response: aiohttp.ClientResponse, what: str) -> Any:
        """The JSON body, read incrementally up to the size limit (Content-Length is not trusted: it may be
        absent, wrong, or describe a compressed body)."""
        if response.content_type != "application/json":
            return None
        limit = self.max_response_bytes
        too_large = SyncError(
            INVALID_DATA,
            f"Vault's answer while {what} is larger than {limit:,} bytes, the most the operator reads "
            "(a Kubernetes Secret holds at most 1 MiB): make the secret smaller or split it",
        )
        if response.content_length is not None and response.content_length > limit:
            raise too_large
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise too_large
        if not body.strip():
            return None  # 204 No Content (revoke-self) may still say application/json
        try:
            if len(body) <= _BIG_BODY:
                return jsonlib.loads(body)
            async with self._big_parses:
                return await asyncio.to_thread(jsonlib.loads, body)
        except RecursionError:
            raise SyncError(
                INVALID_DATA, f"Vault's answer while {what} is nested too deeply to be read"
            ) from None
        except ValueError:
            raise SyncError(
                VAULT_UNAVAILABLE, f"Vault's answer while {what} is not valid JSON", retryable=True
            ) from None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        token: str | None = None,
        namespace: str | None = None,
        json: Mapping[str, Any] | None = None,
        what: str,
    ) -> tuple[int, Any]:
        """One request to `path`, a path made by `encode_path` (already percent-encoded)."""
        headers = {"X-Vault-Request": "true"}
        if token:
            headers["X-Vault-Token"] = token
        vault_namespace = namespace or self.namespace
        if vault_namespace:
            headers["X-Vault-Namespace"] = vault_namespace
        try:
            async with self._get_session().request(
                method, self.url(path, query), headers=headers, json=json, allow_redirects=False
            ) as response:
                if 300 <= response.status < 400:
                    raise SyncError(
                        VAULT_UNAVAILABLE,
                        f"Vault at {self.addr} answered {response.status} (a redirect) while {what}; the "
                        "operator does not follow redirects from Vault: set VAULT_ADDR to the address that "
                        "serves the API (the active node, or a load balancer that forwards to it)",
                        retryable=True,
                    )
                return response.status, await self._read_json(response, what)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise SyncError(
                VAULT_UNAVAILABLE,
                f"TLS verification of Vault at {self.addr} failed while {what} ({_tls_problem(exc)}); "
                "set VAULT_CACERT to the CA that signed Vault's certificate",
                retryable=True,
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise SyncError(
                VAULT_UNAVAILABLE,
                f"TLS handshake with Vault at {self.addr} failed while {what} ({type(exc).__name__}); "
                "check VAULT_ADDR's scheme and VAULT_CACERT",
                retryable=True,
            ) from None
        except TimeoutError:  # before OSError, its base class since Python 3.11 (a hung Vault)
            raise SyncError(
                VAULT_UNAVAILABLE,
                f"Vault at {self.addr} did not answer in time while {what}; "
                "it may be overloaded or unreachable",
                retryable=True,
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SyncError(
                VAULT_UNAVAILABLE,
                f"cannot reach Vault at {self.addr} while {what} ({type(exc).__name__}); "
                "check VAULT_ADDR and that Vault is running",
                retryable=True,
            ) from None

    @staticmethod
    def _unavailable(status: int, body: Any, what: str) -> SyncError:
        detail = _errors_text(body)
        if status == 503 and "sealed" in detail.lower():
            text = f"Vault is sealed ({what}); it must be unsealed"
        else:
            text = f"Vault answered {status} while {what}" + (f": {detail}" if detail else "")
        return SyncError(VAULT_UNAVAILABLE, text, retryable=True)

    async def login(
        self, *, mount: str, role: str | None, jwt: str, namespace: str | None = None
    ) -> VaultToken:
        """Logs in with a service-account JWT (the kubernetes and jwt methods take the same body)."""
        what = f"logging in at auth/{mount} as role {role or '(none)'}"
        payload: dict[str, Any] = {"jwt": jwt}
        if role:
            payload["role"] = role
        try:
            login_path = encode_path("auth", mount, "login")
        except ValueError:
            raise SyncError(
                AUTH_FAILED,
                f"the auth mount {mount!r} has an empty, '.' or '..' segment: "
                "fix spec.auth.mount (default: the setting VAULTSYNC_AUTH_MOUNT)",
            ) from None
        status, body = await self._request("POST", login_path, json=payload, namespace=namespace, what=what)
        if status == 200 and isinstance(body, Mapping) and isinstance(body.get("auth"), Mapping):
            auth = body["auth"]
            return _token(str(auth["client_token"]), str(auth.get("accessor", "")), auth)
        if status >= 500 or status == 429:
            raise self._unavailable(status, body, what)
        detail = _errors_text(body) or f"HTTP {status}"
        raise LoginRefused(
            f"Vault refused the login at auth/{mount} (role {role or '(none)'}): {detail}",
            status=status,
            detail=detail,
        )

    async def renew_self(self, token: VaultToken, *, namespace: str | None = None) -> VaultToken:
        status, body = await self._request(
            "POST",
            "auth/token/renew-self",
            token=token.client_token,
            namespace=namespace,
            what="renewing a token",
        )
        if status == 200 and isinstance(body, Mapping) and isinstance(body.get("auth"), Mapping):
            return _token(token.client_token, token.accessor, body["auth"])
        if status >= 500 or status == 429:
            raise self._unavailable(status, body, "renewing a token")
        raise SyncError(AUTH_FAILED, f"Vault refused to renew a token: {_errors_text(body) or status}")

    async def revoke_self(self, token: VaultToken, *, namespace: str | None = None) -> None:
        await self._request(
            "POST",
            "auth/token/revoke-self",
            token=token.client_token,
            namespace=namespace,
            what="revoking a token",
        )

    async def lookup_self(self, token: VaultToken, *, namespace: str | None = None) -> bool:
        """Whether Vault still accepts the token (a 403 on a valid token is a policy denial)."""
        status, _ = await self._request(
            "GET",
            "auth/token/lookup-self",
            token=token.client_token,
            namespace=namespace,
            what="checking a token",
        )
        if status >= 500 or status == 429:
            raise self._unavailable(status, None, "checking a token")
        return status == 200

    async def read_kv(
        self,
        token: VaultToken,
        *,
        mount: str,
        path: str,
        kv: str,
        version: int | None = None,
        namespace: str | None = None,
    ) -> KVSecret:
        """Reads one KV secret; the location (mount, path, version) appears in errors, never the data."""
        location = f"{mount}/{path}" + (f" version {version}" if version else "")
        try:
            api_path = encode_path(mount, "data", path) if kv == "v2" else encode_path(mount, path)
        except ValueError:
            raise SyncError(
                INVALID_SPEC,
                f"the Vault path {location} has an empty, '.' or '..' segment: fix spec.mount and spec.path",
            ) from None
        query = {"version": str(version)} if kv == "v2" and version else None
        what = f"reading {location}"
        status, body = await self._request(
            "GET", api_path, query=query, token=token.client_token, namespace=namespace, what=what
        )
        if status == 200 and isinstance(body, Mapping) and isinstance(body.get("data"), Mapping):
            if kv == "v2":
                inner = body["data"]
                data = inner.get("data")
                metadata = inner.get("metadata") or {}
                if not isinstance(data, Mapping):
                    raise SyncError(NOT_FOUND, f"{location} has no data (deleted or destroyed version)")
                return KVSecret(
                    data=dict(data),
                    version=metadata.get("version"),
                    created_time=metadata.get("created_time"),
                )
            return KVSecret(data=dict(body["data"]), version=None, created_time=None)
        if status == 404:
            detail = ""
            if isinstance(body, Mapping) and isinstance(body.get("data"), Mapping):
                metadata = body["data"].get("metadata") or {}
                if metadata.get("destroyed"):
                    detail = " (that version was destroyed)"
                elif metadata.get("deletion_time"):
                    detail = " (that version was deleted)"
            raise SyncError(
                NOT_FOUND,
                f"Vault has no secret at {location}{detail}; "
                f"check spec.path/spec.mount and the KV version (kv: {kv})",
            )
        if status == 403:
            raise VaultForbidden(
                PERMISSION_DENIED,
                f"Vault denied reading {location}: the role's policies must allow 'read' on "
                f"{mount}/{'data/' if kv == 'v2' else ''}{path}",
            )
        if status >= 500 or status == 429:
            raise self._unavailable(status, body, what)
        raise SyncError(
            VAULT_UNAVAILABLE, f"Vault answered {status} while {what}: {_errors_text(body)}", retryable=True
        )

    async def mount_info(
        self, token: VaultToken, mount: str, *, namespace: str | None = None
    ) -> Mapping[str, Any] | None:
        """What Vault tells this token about the mount that holds `mount` (`path`, `type`,
        `options.version`), or None when it tells nothing (403/404: no such mount, or no access to it).
        The answer's `path` is that of the enclosing mount, which for a path inside a mount is not
        `mount/`. Raises SyncError when Vault is unavailable."""
        what = f"looking up the mount {mount}"
        try:
            lookup_path = encode_path("sys/internal/ui/mounts", mount)
        except ValueError:
            raise SyncError(
                INVALID_SPEC, f"the mount {mount!r} has an empty, '.' or '..' segment: fix spec.mount"
            ) from None
        status, body = await self._request(
            "GET",
            lookup_path,
            token=token.client_token,
            namespace=namespace,
            what=what,
        )
        if status == 200 and isinstance(body, Mapping) and isinstance(body.get("data"), Mapping):
            data: Mapping[str, Any] = body["data"]
            return data
        if status in (403, 404):
            return None
        if status >= 500 or status == 429:
            raise self._unavailable(status, body, what)
        raise SyncError(
            VAULT_UNAVAILABLE, f"Vault answered {status} while {what}: {_errors_text(body)}", retryable=True
        )

    async def health_detail(self) -> tuple[int, Mapping[str, Any]]:
        """Vault's sys/health answer: (HTTP status, body). Raises SyncError when Vault cannot be reached
        (the message says why: connection refused, TLS verification, timeout)."""
        status, body = await self._request("GET", "sys/health", what="checking health")
        return status, body if isinstance(body, Mapping) else {}

    async def health(self) -> str:
        """`ok`, `sealed`, `standby` or `unreachable`: for readiness and diagnostics."""
        try:
            status, _ = await self._request(
                "GET", "sys/health", query={"standbyok": "true"}, what="checking health"
            )
        except SyncError:
            return "unreachable"
        return {200: "ok", 429: "standby", 473: "standby", 503: "sealed"}.get(status, "unreachable")
