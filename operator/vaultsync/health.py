"""HTTP endpoints: /healthz (liveness), /readyz (readiness) on the health port, /metrics on the metrics port.

Liveness fails only when the operator is stuck: its event loop has not ticked for a long time. Readiness
needs the managed-Secret watch to have listed (the API server is reachable); Vault being down is reported in
the body but does not make the operator unready, since restarting it would not help.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vaultsync.metrics import REGISTRY

STUCK_AFTER_SECONDS = 60.0
# Vault's state in the readiness body is checked with this bound, well under the probe's timeout: a Vault
# that hangs must not make the probe itself time out (Vault down is no reason to be unready).
VAULT_CHECK_SECONDS = 2.0


class Heartbeat:
    def __init__(self) -> None:
        self.last = time.monotonic()

    async def run(self) -> None:
        while True:
            self.last = time.monotonic()
            await asyncio.sleep(1.0)

    @property
    def stuck(self) -> bool:
        return time.monotonic() - self.last > STUCK_AFTER_SECONDS


async def start_servers(
    *,
    address: str,
    health_port: int,
    metrics_port: int,
    heartbeat: Heartbeat,
    ready: Callable[[], bool],
    vault_state: Callable[[], Awaitable[str]],
) -> list[web.AppRunner]:
    runners: list[web.AppRunner] = []

    async def healthz(_: web.Request) -> web.Response:
        if heartbeat.stuck:
            return web.Response(status=500, text="stuck: the event loop has not ticked for a minute\n")
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        try:
            vault = await asyncio.wait_for(vault_state(), VAULT_CHECK_SECONDS)
        except TimeoutError:
            vault = "unreachable"
        if not ready():
            return web.Response(
                status=503, text=f"not ready: Kubernetes API not listed yet; vault: {vault}\n"
            )
        return web.Response(text=f"ok; vault: {vault}\n")

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(REGISTRY))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    routes: dict[int, list[web.RouteDef]] = {}
    if health_port:
        routes.setdefault(health_port, []).extend([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    if metrics_port:
        routes.setdefault(metrics_port, []).append(web.get("/metrics", metrics))
    for port, port_routes in routes.items():
        app = web.Application()
        app.add_routes(port_routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address, port).start()
        runners.append(runner)
    return runners
