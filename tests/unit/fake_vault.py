"""A small fake Vault: a real aiohttp server on 127.0.0.1 recording the raw request line of each request.

It serves logins (`.../login`), `auth/token/lookup-self`, `sys/internal/ui/mounts/<path>` from a mount table,
and KV v1/v2 reads under the table's KV mounts. `override` lets a test answer one raw path its own way.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.test_utils import RawTestServer

from vaultsync.vault.client import VaultClient
from vaultsync.vault.identity import ServiceAccountJwts, TokenFileJwt, VaultSessions

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
FAKE_TOKEN = "s.fakeclienttoken0000000000"


@dataclass
class FakeVault:
    # mount path (no trailing slash) -> (type, options.version or None)
    mounts: dict[str, tuple[str, str | None]] = field(
        default_factory=lambda: {
            "secret": ("kv", "2"),
            "kv1": ("kv", "1"),
            "old": ("generic", None),
            "transit": ("transit", None),
            "team/kv": ("kv", "2"),
        }
    )
    hidden: set[str] = field(default_factory=set)  # mounts whose lookup answers 403
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, raw path with query)
    overrides: dict[str, Handler] = field(default_factory=dict)  # raw path -> handler
    read_status: int = 200

    def raw_paths(self, method: str | None = None) -> list[str]:
        return [raw for m, raw in self.seen if method is None or m == method]

    def reads(self) -> list[str]:
        """Raw paths of every request that is neither a login, nor a token check, nor a mount lookup."""
        return [
            raw
            for _, raw in self.seen
            if not raw.endswith("/login")
            and not raw.startswith("/v1/sys/internal/ui/mounts/")
            and raw != "/v1/auth/token/lookup-self"
        ]

    def lookups(self) -> list[str]:
        return [raw for _, raw in self.seen if raw.startswith("/v1/sys/internal/ui/mounts/")]

    def _mount_of(self, path: str) -> str | None:
        best = None
        for mount in self.mounts:
            if (path == mount or path.startswith(mount + "/")) and (best is None or len(mount) > len(best)):
                best = mount
        return best

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = request.raw_path
        self.seen.append((request.method, raw))
        override = self.overrides.get(raw)
        if override is not None:
            return await override(request)
        path = raw.split("?", 1)[0]
        if path.endswith("/login"):
            return _json({"auth": {"client_token": FAKE_TOKEN, "accessor": "acc", "lease_duration": 3600}})
        if path == "/v1/auth/token/lookup-self":
            return _json({"data": {"accessor": "acc"}})
        if path.startswith("/v1/sys/internal/ui/mounts/"):
            wanted = unquote(path.removeprefix("/v1/sys/internal/ui/mounts/"))
            mount = self._mount_of(wanted)
            if mount is None or mount in self.hidden:
                return _json({"errors": ["permission denied"]}, status=403)
            kind, version = self.mounts[mount]
            options = {"version": version} if version else None
            return _json({"data": {"path": mount + "/", "type": kind, "options": options}})
        if self.read_status != 200:
            return _json({"errors": []}, status=self.read_status)
        segments = [unquote(s) for s in path.removeprefix("/v1/").split("/")]
        mount = self._mount_of("/".join(segments))
        if mount is None:
            return _json({"errors": ["no handler for route"]}, status=404)
        rest = segments[len(mount.split("/")) :]
        if self.mounts[mount] == ("kv", "2"):
            if not rest or rest[0] != "data":
                return _json({"errors": []}, status=404)
            return _json({"data": {"data": {"segments": rest[1:]}, "metadata": {"version": 1}}})
        return _json({"data": {"segments": rest}})


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


@asynccontextmanager
async def fake_vault(vault: FakeVault | None = None) -> Any:
    """(FakeVault, its address) while the server runs."""
    vault = vault or FakeVault()
    server = RawTestServer(vault.handle, host="127.0.0.1")
    await server.start_server()
    try:
        yield vault, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def sessions_for(client: VaultClient, tmp_path: Path) -> VaultSessions:
    """Real VaultSessions whose default identity logs in with a dummy JWT from a file."""
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text("not-a-real-jwt")

    async def no_token_request(
        namespace: str, name: str, audience: str | None, ttl: int
    ) -> tuple[str, float]:
        raise AssertionError("no TokenRequest in these tests")

    return VaultSessions(client, TokenFileJwt(str(jwt_file)), ServiceAccountJwts(no_token_request, 600))


def split_raw(raw: str) -> Iterator[str]:
    """The raw segments of a raw path (query dropped)."""
    yield from raw.split("?", 1)[0].split("/")
