"""The raw limit: a minimal asyncio program with no operator, reading N Vault paths and creating N Secrets.

It logs in to OpenBao once (the operator's ServiceAccount JWT, kubernetes auth), then ``--concurrency``
workers each read a KV v2 path and create the Secret with its data, as fast as the machine allows. The
benchmark runs it as a separate process (as the operator is one) and reads one JSON line from its stdout::

    python -m bench.raw < config.json      # {"api_url", "admin_token", "ca_cert", "vault_addr", ...}

``Http`` (one aiohttp session per base URL, JSON in and out) is shared with the harness.
"""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import ssl
import sys
import time
from collections.abc import Mapping
from typing import Any

import aiohttp


class HttpError(Exception):
    def __init__(self, status: int, method: str, url: str, text: str) -> None:
        super().__init__(f"{method} {url}: {status} {text[:300]}")
        self.status = status


class Http:
    """A JSON client for one base URL with fixed headers: one keep-alive connection pool."""

    def __init__(
        self,
        base: str,
        headers: Mapping[str, str],
        *,
        cafile: str | None = None,
        limit: int = 64,
        timeout: float = 60.0,
    ) -> None:
        self.base = base.rstrip("/")
        context: ssl.SSLContext | bool = ssl.create_default_context(cafile=cafile) if cafile else True
        self.session = aiohttp.ClientSession(
            headers=dict(headers),
            connector=aiohttp.TCPConnector(limit=limit, ssl=context),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (),
    ) -> Any:
        """The decoded JSON answer; raises HttpError for a status >= 400 that is not in ``ok``."""
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        url = self.base + path
        async with self.session.request(method, url, data=data, params=params, headers=headers) as response:
            text = await response.text()
            if response.status >= 400 and response.status not in ok:
                raise HttpError(response.status, method, url, text)
            return json.loads(text) if text else None

    async def close(self) -> None:
        await self.session.close()


def kube_http(config: Mapping[str, Any], limit: int = 64) -> Http:
    return Http(
        config["api_url"],
        {"Authorization": f"Bearer {config['admin_token']}", "User-Agent": "vaultsync-bench"},
        cafile=config["ca_cert"],
        limit=limit,
    )


def vault_http(config: Mapping[str, Any], token: str | None = None, limit: int = 64) -> Http:
    headers = {"X-Vault-Token": token} if token else {}
    return Http(config["vault_addr"], headers, cafile=config.get("vault_ca_cert"), limit=limit)


async def login(config: Mapping[str, Any]) -> str:
    """One kubernetes-auth login with the operator's JWT and the benchmark's role."""
    vault = vault_http(config)
    try:
        jwt = open(config["token_file"], encoding="utf-8").read().strip()  # noqa: ASYNC230, SIM115
        answer = await vault.request(
            "POST", f"/v1/auth/{config['auth_mount']}/login", {"jwt": jwt, "role": config["role"]}
        )
        return str(answer["auth"]["client_token"])
    finally:
        await vault.close()


async def run_raw(config: Mapping[str, Any]) -> dict[str, Any]:
    """Reads every path of ``config["paths"]`` (KV v2 under mount ``secret``) and creates Secret ``names[i]``
    in ``config["namespace"]``; returns the elapsed time (the login included)."""
    paths: list[str] = config["paths"]
    names: list[str] = config["names"]
    concurrency: int = config.get("concurrency", 32)
    started = time.monotonic()
    token = await login(config)
    vault = vault_http(config, token, limit=concurrency)
    kube = kube_http(config, limit=concurrency)
    pending = list(range(len(paths)))
    namespace = config["namespace"]

    async def worker() -> None:
        while pending:
            i = pending.pop()
            answer = await vault.request("GET", f"/v1/secret/data/{paths[i]}")
            data = answer["data"]["data"]
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": names[i], "namespace": namespace},
                "type": "Opaque",
                "data": {k: base64.b64encode(str(v).encode()).decode() for k, v in data.items()},
            }
            await kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", secret)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await vault.close()
        await kube.close()
    seconds = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "count": len(paths),
        "concurrency": concurrency,
        "program_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
    }


def main() -> None:
    config = json.load(sys.stdin)
    result = asyncio.run(run_raw(config))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
