"""The probe endpoints on a real port: liveness fails only when the event loop is stuck; readiness follows
the watch and never waits on a hanging Vault for longer than its bound."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from vaultsync import health
from vaultsync.devstack.stack import pick_free_ports


async def _get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        return response.status, await response.text()


async def test_liveness_fails_only_when_the_heartbeat_stops() -> None:
    heartbeat = health.Heartbeat()
    port, metrics_port = pick_free_ports(2)
    ready = {"value": False}

    async def vault_state() -> str:
        return "ok"

    runners = await health.start_servers(
        address="127.0.0.1",
        health_port=port,
        metrics_port=metrics_port,
        heartbeat=heartbeat,
        ready=lambda: ready["value"],
        vault_state=vault_state,
    )
    try:
        assert await _get(port, "/healthz") == (200, "ok\n")
        assert await _get(port, "/readyz") == (503, "not ready: Kubernetes API not listed yet; vault: ok\n")
        ready["value"] = True
        assert await _get(port, "/readyz") == (200, "ok; vault: ok\n")
        # A loop that has not ticked for longer than STUCK_AFTER_SECONDS is stuck.
        heartbeat.last = time.monotonic() - health.STUCK_AFTER_SECONDS - 1
        status, body = await _get(port, "/healthz")
        assert status == 500
        assert body.startswith("stuck")
        # Readiness does not depend on the heartbeat.
        assert (await _get(port, "/readyz"))[0] == 200
        status, text = await _get(metrics_port, "/metrics")
        assert status == 200
        assert "vaultsync_build_info" in text
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_readiness_bounds_a_hanging_vault_check() -> None:
    port, metrics_port = pick_free_ports(2)

    async def hanging() -> str:
        await asyncio.sleep(60)
        return "ok"

    runners = await health.start_servers(
        address="127.0.0.1",
        health_port=port,
        metrics_port=metrics_port,
        heartbeat=health.Heartbeat(),
        ready=lambda: True,
        vault_state=hanging,
    )
    try:
        started = time.monotonic()
        assert await _get(port, "/readyz") == (200, "ok; vault: unreachable\n")
        assert time.monotonic() - started < health.VAULT_CHECK_SECONDS + 1.5
    finally:
        for runner in runners:
            await runner.cleanup()
