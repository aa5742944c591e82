"""Failed watches are counted like failed requests (vaultsync_kubernetes_api_errors_total, through the
client's on_error), so the alert on Kubernetes API errors sees a broken watch; 410 Gone is not an error."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from vaultsync.kube.client import ApiError, KubeClient, WatchExpired


async def watch_once(handler: Any) -> tuple[list[str], BaseException]:
    app = web.Application()
    app.router.add_get("/api/v1/secrets", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    errors: list[str] = []

    async def credentials() -> tuple[str, dict[str, str], Any]:
        return str(server.make_url("")), {}, None

    kube = KubeClient(credentials, on_error=errors.append)
    try:
        with pytest.raises((ApiError, WatchExpired)) as raised:
            async for _ in kube.watch("/api/v1/secrets", {"timeoutSeconds": "5"}):
                pass
    finally:
        await kube.close()
        await server.close()
    return errors, raised.value


async def test_a_refused_watch_is_counted() -> None:
    async def forbidden(request: web.Request) -> web.Response:
        return web.json_response({"reason": "Forbidden"}, status=403)

    errors, raised = await watch_once(forbidden)
    assert errors == ["403"]
    assert isinstance(raised, ApiError) and raised.status == 403


async def test_an_error_event_in_the_stream_is_counted() -> None:
    async def error_event(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        event = {"type": "ERROR", "object": {"code": 500, "reason": "InternalError", "message": "etcd"}}
        await response.write(json.dumps(event).encode() + b"\n")
        return response

    errors, raised = await watch_once(error_event)
    assert errors == ["500"]
    assert isinstance(raised, ApiError) and raised.status == 500


async def test_an_expired_watch_is_not_an_error() -> None:
    async def gone(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        event = {"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}
        await response.write(json.dumps(event).encode() + b"\n")
        return response

    errors, raised = await watch_once(gone)
    assert errors == []
    assert isinstance(raised, WatchExpired)


async def test_an_unreachable_api_server_is_counted() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    errors: list[str] = []

    async def credentials() -> tuple[str, dict[str, str], Any]:
        return f"http://127.0.0.1:{port}", {}, None

    kube = KubeClient(credentials, on_error=errors.append)
    try:
        with pytest.raises(ApiError):
            async for _ in kube.watch("/api/v1/secrets", {"timeoutSeconds": "5"}):
                pass
    finally:
        await kube.close()
    assert errors == ["unreachable"]
