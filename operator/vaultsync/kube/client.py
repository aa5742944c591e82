"""A thin asynchronous Kubernetes API client for the few calls the operator makes itself.

kopf watches VaultSecrets; this client writes Secrets, status, Events, TokenRequests and rollout restarts,
and watches the managed Secrets by label. It reuses the credentials that kopf's login produced and one
connection pool for everything. Errors carry the HTTP status and the API server's message (which names
objects, never Secret data: request bodies are not echoed back).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

GROUP = "vaultsync.io"
VERSION = "v1alpha1"
PLURAL = "vaultsecrets"


class ApiError(Exception):
    """A Kubernetes API request failed: `status` is the HTTP status (0 when unreachable)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


Credentials = Callable[[], Awaitable[tuple[str, dict[str, str], Any]]]
"""Returns (server URL, auth headers, ssl context) — called again after a 401."""


class KubeClient:
    def __init__(
        self, credentials: Credentials, *, pool_size: int = 64, on_error: Callable[[str], None] | None = None
    ):
        self._credentials = credentials
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._headers: dict[str, str] = {}
        self._on_error = on_error or (lambda kind: None)
        self._login_lock = asyncio.Lock()

    async def _connect(self) -> aiohttp.ClientSession:
        async with self._login_lock:
            if self._session is None or self._session.closed:
                server, headers, ssl_context = await self._credentials()
                self._server = server.rstrip("/")
                self._headers = headers
                connector = aiohttp.TCPConnector(
                    limit=self._pool_size, ssl=ssl_context if ssl_context else True
                )
                self._session = aiohttp.ClientSession(connector=connector, headers=headers)
            return self._session

    async def _relogin(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        ok_missing: bool = False,
    ) -> Any:
        """Sends one request; returns the decoded body (None for a 404 when `ok_missing`)."""
        for attempt in (1, 2):
            session = await self._connect()
            data = json.dumps(body) if body is not None else None
            headers = {"Content-Type": content_type} if data is not None else {}
            try:
                async with session.request(
                    method, self._server + path, data=data, params=params, headers=headers
                ) as response:
                    if response.status == 401 and attempt == 1:
                        await self._relogin()
                        continue
                    if response.status == 404 and ok_missing:
                        return None
                    payload = await response.json(content_type=None) if response.content_length != 0 else None
                    if response.status >= 400:
                        self._on_error(str(response.status))
                        reason = payload.get("reason", "") if isinstance(payload, dict) else ""
                        message = payload.get("message", "") if isinstance(payload, dict) else ""
                        raise ApiError(response.status, reason or str(response.reason), message)
                    return payload
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._on_error("unreachable")
                raise ApiError(
                    0, "Unreachable", f"cannot reach the Kubernetes API ({type(exc).__name__})"
                ) from None
        raise ApiError(401, "Unauthorized", "the Kubernetes API refused the operator's credentials")

    # Secrets -----------------------------------------------------------------------------------------------
    @staticmethod
    def secret_path(namespace: str, name: str = "") -> str:
        base = f"/api/v1/namespaces/{quote(namespace)}/secrets"
        return f"{base}/{quote(name)}" if name else base

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.request(
            "GET", self.secret_path(namespace, name), ok_missing=True
        )
        return result

    async def create_secret(self, namespace: str, secret: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", self.secret_path(namespace), body=secret)
        return result

    async def replace_secret(self, namespace: str, name: str, secret: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PUT", self.secret_path(namespace, name), body=secret)
        return result

    async def patch_secret(
        self, namespace: str, name: str, patch: Any, content_type: str = MERGE_PATCH
    ) -> Any:
        return await self.request(
            "PATCH", self.secret_path(namespace, name), body=patch, content_type=content_type
        )

    async def delete_secret(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        body = {"preconditions": {"uid": uid}} if uid else None
        await self.request("DELETE", self.secret_path(namespace, name), body=body, ok_missing=True)

    # VaultSecrets ------------------------------------------------------------------------------------------
    @staticmethod
    def vaultsecret_path(namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"

    async def patch_vaultsecret_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> Any:
        return await self.request(
            "PATCH",
            self.vaultsecret_path(namespace, name) + "/status",
            body={"status": status},
            content_type=MERGE_PATCH,
        )

    async def patch_vaultsecret(
        self, namespace: str, name: str, patch: Any, content_type: str = MERGE_PATCH
    ) -> Any:
        return await self.request(
            "PATCH", self.vaultsecret_path(namespace, name), body=patch, content_type=content_type
        )

    # Everything else ---------------------------------------------------------------------------------------
    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        await self.request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", body=event)

    async def request_token(
        self, namespace: str, service_account: str, audiences: list[str], seconds: int
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": seconds},
        }
        path = f"/api/v1/namespaces/{quote(namespace)}/serviceaccounts/{quote(service_account)}/token"
        result: dict[str, Any] = await self.request("POST", path, body=body)
        return result

    async def patch_workload(self, namespace: str, kind: str, name: str, patch: Mapping[str, Any]) -> Any:
        plural = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}[kind]
        path = f"/apis/apps/v1/namespaces/{quote(namespace)}/{plural}/{quote(name)}"
        return await self.request("PATCH", path, body=patch, content_type=STRATEGIC_PATCH)

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.request(
            "GET", f"/api/v1/namespaces/{quote(name)}", ok_missing=True
        )
        return result

    async def list_page(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", path, params=params)
        return result

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Streams watch events; raises WatchExpired on 410 Gone, ApiError on other failures."""
        session = await self._connect()
        query = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=float(params.get("timeoutSeconds", "300")) + 30)
        try:
            async with session.get(self._server + path, params=query, timeout=timeout) as response:
                if response.status == 401:
                    await self._relogin()
                    raise ApiError(401, "Unauthorized", "credentials expired; reconnecting")
                if response.status == 410:
                    raise WatchExpired()
                if response.status >= 400:
                    # Failed watches count with failed requests (vaultsync_kubernetes_api_errors_total);
                    # 410 Gone is the normal end of a watch's history, not an error.
                    self._on_error(str(response.status))
                    raise ApiError(response.status, str(response.reason), await response.text())
                async for line in _lines(response.content):
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object", {})
                        if status.get("code") == 410:
                            raise WatchExpired()
                        self._on_error(str(status.get("code", 500)))
                        raise ApiError(
                            int(status.get("code", 500)), status.get("reason", ""), status.get("message", "")
                        )
                    yield event
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._on_error("unreachable")
            raise ApiError(0, "Unreachable", f"watch interrupted ({type(exc).__name__})") from None


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Non-empty lines of a watch stream, however long: a Secret near Kubernetes' 1 MiB limit is one line
    longer than aiohttp's line reader accepts ("Chunk too big"), which would end the watch."""
    pending = b""
    async for chunk in stream.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():
        yield pending
