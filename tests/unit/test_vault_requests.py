"""What reaches Vault's HTTP API: raw request paths on a real local server, redirects, size caps, and the KV
mount check that comes before the first read (issue 10, finding 1)."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.unit.fake_vault import FakeVault, fake_vault, sessions_for
from vaultsync.core.errors import (
    INVALID_DATA,
    INVALID_SPEC,
    NOT_FOUND,
    PERMISSION_DENIED,
    VAULT_UNAVAILABLE,
    SyncError,
)
from vaultsync.core.spec import SourceSpec
from vaultsync.vault.client import MAX_RESPONSE_BYTES, VaultClient, VaultToken, encode_path
from vaultsync.vault.identity import Identity
from vaultsync.vault.mounts import MountChecker
from vaultsync.vault.reader import SecretReader

TOKEN = VaultToken(client_token="s.test", accessor="acc", lease_duration=0, renewable=False, obtained_at=0)
IDENTITY = Identity(method="kubernetes", mount="kubernetes", role="reader", vault_namespace=None)


# ------------------------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("segment", "encoded"),
    [
        ("a b", "a%20b"),
        ("a+b", "a%2Bb"),
        ("a;b", "a%3Bb"),
        ("a%2e%2e", "a%252e%252e"),
        ("%2e%2e", "%252e%252e"),
        ("a?b", "a%3Fb"),
        ("a#b", "a%23b"),
        ("ä€", "%C3%A4%E2%82%AC"),
        ("..b", "..b"),
        ("...", "..."),
        ("a\\b", "a%5Cb"),
        ("a=b&c", "a%3Db%26c"),
        ("~x_y-z.w", "~x_y-z.w"),
    ],
)
def test_encode_path_percent_encodes_every_segment(segment: str, encoded: str) -> None:
    assert encode_path("secret", "data", f"apps/{segment}/db") == f"secret/data/apps/{encoded}/db"


@pytest.mark.parametrize("path", ["..", ".", "a/../b", "a//b", "a/", "/a", "a/."])
def test_encode_path_refuses_dot_and_empty_segments(path: str) -> None:
    with pytest.raises(ValueError, match="segment"):
        encode_path("secret", "data", path)


@pytest.mark.parametrize(
    "segment", ["a b", "a+b", "a;b", "a%2e%2e", "%2e%2e", "a?b", "a#b", "ä€", "..b", "...", "a\\b", "x=1&y"]
)
async def test_raw_path_on_the_wire_stays_inside_the_kv_data_path(segment: str) -> None:
    """The raw request line a real server receives is exactly the encoded path, nothing normalised or
    decoded on the way (yarl and aiohttp would otherwise turn %2e%2e into .. and drop it)."""
    async with fake_vault() as (vault, addr):
        client = VaultClient(addr)
        try:
            secret = await client.read_kv(TOKEN, mount="secret", path=f"x/{segment}/y", kv="v2")
        finally:
            await client.close()
    [raw] = vault.raw_paths()
    assert raw == "/v1/secret/data/x/" + encode_path(segment) + "/y"
    assert raw.startswith("/v1/secret/data/")
    assert "?" not in raw and "#" not in raw
    # The server decodes it back to the very segments of the spec.
    assert secret.data["segments"] == ["x", segment, "y"]


async def test_kv_v1_and_version_query_and_multi_segment_mounts() -> None:
    async with fake_vault() as (vault, addr):
        client = VaultClient(addr)
        try:
            await client.read_kv(TOKEN, mount="kv1", path="a b/c", kv="v1")
            await client.read_kv(TOKEN, mount="team/kv", path="p", kv="v2", version=3)
            await client.login(mount="jwt/cluster a", role="r", jwt="j")
            await client.mount_info(TOKEN, "team/kv")
        finally:
            await client.close()
    assert vault.raw_paths() == [
        "/v1/kv1/a%20b/c",
        "/v1/team/kv/data/p?version=3",
        "/v1/auth/jwt/cluster%20a/login",
        "/v1/sys/internal/ui/mounts/team/kv",
    ]


async def test_a_vault_address_with_a_path_prefix_is_kept() -> None:
    async with fake_vault() as (vault, addr):
        client = VaultClient(addr + "/vault/")
        try:
            with pytest.raises(SyncError):
                await client.read_kv(TOKEN, mount="secret", path="a", kv="v2")
        finally:
            await client.close()
    assert vault.raw_paths() == ["/vault/v1/secret/data/a"]


# ------------------------------------------------------------------------------------------ redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_not_followed(status: int) -> None:
    async def redirect(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": "/v1/auth/token/lookup-self"})

    vault = FakeVault(overrides={"/v1/secret/data/a": redirect})
    async with fake_vault(vault) as (vault, addr):
        client = VaultClient(addr)
        try:
            with pytest.raises(SyncError) as info:
                await client.read_kv(TOKEN, mount="secret", path="a", kv="v2")
        finally:
            await client.close()
    assert vault.raw_paths() == ["/v1/secret/data/a"]  # never the Location
    assert info.value.reason == VAULT_UNAVAILABLE
    assert f"answered {status} (a redirect)" in info.value.message
    assert "does not follow redirects" in info.value.message


# ---------------------------------------------------------------------------------------- size limit


def _big_json(size: int) -> bytes:
    return json.dumps({"data": {"data": {"k": "v" * size}, "metadata": {"version": 1}}}).encode()


async def _read_with(handler: Any, *, limit: int = MAX_RESPONSE_BYTES) -> SyncError:
    vault = FakeVault(overrides={"/v1/secret/data/big": handler})
    async with fake_vault(vault) as (_, addr):
        client = VaultClient(addr, max_response_bytes=limit)
        try:
            with pytest.raises(SyncError) as info:
                await client.read_kv(TOKEN, mount="secret", path="big", kv="v2")
        finally:
            await client.close()
    return info.value


async def test_an_answer_over_the_default_limit_is_refused_without_values() -> None:
    async def chunked(request: web.BaseRequest) -> web.StreamResponse:
        # No Content-Length: the limit must hold while reading.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        body = _big_json(MAX_RESPONSE_BYTES + 1024)
        for start in range(0, len(body), 256 * 1024):
            await response.write(body[start : start + 256 * 1024])
        await response.write_eof()
        return response

    error = await _read_with(chunked)
    assert error.reason == INVALID_DATA
    assert "reading secret/big" in error.message
    assert f"{MAX_RESPONSE_BYTES:,} bytes" in error.message
    assert "vvvv" not in error.message


async def test_a_compressed_answer_is_limited_by_its_decoded_size() -> None:
    """A small gzip body (honest small Content-Length) that inflates past the limit."""
    payload = gzip.compress(_big_json(50_000))
    assert len(payload) < 1_000

    async def bomb(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(
            body=payload, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    error = await _read_with(bomb, limit=10_000)
    assert error.reason == INVALID_DATA
    assert "10,000 bytes" in error.message


async def test_content_length_over_the_limit_is_refused_before_reading() -> None:
    async def big(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(body=_big_json(20_000), content_type="application/json")

    assert (await _read_with(big, limit=10_000)).reason == INVALID_DATA


@pytest.mark.parametrize("size", [5_000, 1_500_000])  # parsed on the loop / in a worker thread
async def test_an_answer_under_the_limit_is_read(size: int) -> None:
    async def fine(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(body=_big_json(size), content_type="application/json")

    vault = FakeVault(overrides={"/v1/secret/data/big": fine})
    async with fake_vault(vault) as (_, addr):
        client = VaultClient(addr, max_response_bytes=2 * size)
        try:
            secrets = await asyncio.gather(
                *(client.read_kv(TOKEN, mount="secret", path="big", kv="v2") for _ in range(3))
            )
        finally:
            await client.close()
    assert [len(secret.data["k"]) for secret in secrets] == [size] * 3


async def test_deeply_nested_json_is_invalid_data() -> None:
    async def deep(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(text="[" * 200_000 + "]" * 200_000, content_type="application/json")

    error = await _read_with(deep)
    assert error.reason == INVALID_DATA
    assert "nested too deeply" in error.message


# ----------------------------------------------------------------------------------- KV mount check


def source(mount: str, kv: str = "v2", path: str = "apps/db", where: str = "spec") -> SourceSpec:
    return SourceSpec(mount=mount, path=path, kv=kv, version=None, where=where)  # type: ignore[arg-type]


async def _reader_read(vault: FakeVault, tmp_path: Path, *sources: SourceSpec) -> tuple[SecretReader, Any]:
    async with fake_vault(vault) as (_, addr):
        client = VaultClient(addr)
        reader = SecretReader(sessions_for(client, tmp_path))
        try:
            results: list[Any] = []
            for src in sources:
                try:
                    results.append(await reader.read(IDENTITY, src, fresh=True))
                except SyncError as exc:
                    results.append(exc)
            return reader, results
        finally:
            await client.close()


@pytest.mark.parametrize(
    ("src", "fragments"),
    [
        (source("secret", kv="v1"), ["spec.kv is v1", "KV v2", "set spec.kv: v2"]),
        (source("kv1", kv="v2"), ["spec.kv is v2", "KV v1", "set spec.kv: v1"]),
        (source("old", kv="v2"), ["KV v1"]),
        (source("transit", kv="v1"), ["spec.mount 'transit' is a transit mount", "not a KV"]),
        (
            source("secret/data", kv="v1", path="x"),
            ["spec.mount 'secret/data' is not a mount but a path inside the mount 'secret'"],
        ),
        (
            source("secret/metadata", kv="v2", where="spec.sources[2]"),
            ["spec.sources[2].mount 'secret/metadata'", "inside the mount 'secret'"],
        ),
    ],
)
async def test_a_mount_that_is_not_the_stated_kv_engine_is_refused_and_never_read(
    src: SourceSpec, fragments: list[str], tmp_path: Path
) -> None:
    vault = FakeVault()
    _, [error] = await _reader_read(vault, tmp_path, src)
    assert isinstance(error, SyncError)
    assert error.reason == INVALID_SPEC
    for fragment in fragments:
        assert fragment in error.message, (fragment, error.message)
    assert vault.reads() == []
    assert "/v1/auth/token/lookup-self" not in vault.raw_paths()


async def test_kv_mounts_are_read_after_one_lookup_each(tmp_path: Path) -> None:
    vault = FakeVault()
    _, results = await _reader_read(
        vault,
        tmp_path,
        source("secret", path="a"),
        source("secret", path="b"),
        source("kv1", kv="v1", path="c"),
        source("old", kv="v1", path="d"),
        source("team/kv", path="e"),
    )
    assert all(not isinstance(r, Exception) for r in results), results
    assert vault.lookups() == [
        "/v1/sys/internal/ui/mounts/secret",
        "/v1/sys/internal/ui/mounts/kv1",
        "/v1/sys/internal/ui/mounts/old",
        "/v1/sys/internal/ui/mounts/team/kv",
    ]
    assert vault.reads() == [
        "/v1/secret/data/a",
        "/v1/secret/data/b",
        "/v1/kv1/c",
        "/v1/old/d",
        "/v1/team/kv/data/e",
    ]


async def test_no_visibility_is_permission_denied_naming_the_policy(tmp_path: Path) -> None:
    vault = FakeVault(hidden={"secret"})
    _, [error] = await _reader_read(vault, tmp_path, source("secret"))
    assert isinstance(error, SyncError)
    assert error.reason == PERMISSION_DENIED
    assert "spec.mount" in error.message
    assert "the role's policies must allow 'read' on secret/data/apps/db" in error.message
    assert "no mount at secret: check spec.mount too" in error.message
    assert "secret/data/apps/db" in error.message
    assert vault.reads() == []


@pytest.mark.parametrize("status", [403, 404])
async def test_a_read_answering_403_or_404_makes_the_next_read_check_the_mount_again(
    status: int, tmp_path: Path
) -> None:
    vault = FakeVault(read_status=status)
    _, results = await _reader_read(vault, tmp_path, source("secret"), source("secret"))
    assert [r.reason for r in results] == [PERMISSION_DENIED if status == 403 else NOT_FOUND] * 2
    assert vault.lookups() == ["/v1/sys/internal/ui/mounts/secret"] * 2


async def test_the_cache_expires_after_its_ttl() -> None:
    now = [0.0]
    async with fake_vault() as (vault, addr):
        client = VaultClient(addr)
        checker = MountChecker(client, ttl=600, clock=lambda: now[0])
        try:
            await checker.check(TOKEN, source("secret"), namespace=None)
            now[0] = 599
            await checker.check(TOKEN, source("secret"), namespace=None)
            await checker.check(TOKEN, source("secret"), namespace="team-a")  # another Vault namespace
            now[0] = 601
            await checker.check(TOKEN, source("secret"), namespace=None)
            assert len(vault.lookups()) == 3
            # A cached fact that disagrees with the spec is not trusted for a refusal: the asking token
            # looks the mount up itself (it may not see it at all), and the refusal rests on that answer.
            with pytest.raises(SyncError) as info:
                await checker.check(TOKEN, source("secret", kv="v1"), namespace=None)
        finally:
            await client.close()
    assert info.value.reason == INVALID_SPEC
    assert len(vault.lookups()) == 4


async def test_concurrent_reads_of_one_mount_share_one_lookup() -> None:
    async with fake_vault() as (vault, addr):
        client = VaultClient(addr)
        checker = MountChecker(client)
        try:
            await asyncio.gather(
                *(checker.check(TOKEN, source("secret", path=f"p{i}"), namespace=None) for i in range(20))
            )
        finally:
            await client.close()
    assert vault.lookups() == ["/v1/sys/internal/ui/mounts/secret"]


@pytest.mark.parametrize("mount", ["auth/token", "sys", "Identity", "cubbyhole/x"])
async def test_the_checker_refuses_system_mounts_without_asking_vault(mount: str, tmp_path: Path) -> None:
    """Defence in depth for callers that build a SourceSpec without the parser (doctor)."""
    vault = FakeVault()
    _, [error] = await _reader_read(vault, tmp_path, source(mount, kv="v1", path="lookup-self"))
    assert isinstance(error, SyncError)
    assert error.reason == INVALID_SPEC
    assert "Vault's own mounts" in error.message
    assert vault.lookups() == []
    assert vault.reads() == []
    assert "/v1/auth/token/lookup-self" not in vault.raw_paths()


async def test_a_cached_mount_fact_never_refuses_for_a_token_that_cannot_see_the_mount() -> None:
    """Tenant A's lookup of `secret` (KV v2) must not tell tenant B, who sees no such mount, its version."""
    vault = FakeVault()
    async with fake_vault(vault) as (vault, addr):
        client = VaultClient(addr)
        checker = MountChecker(client)
        try:
            await checker.check(TOKEN, source("secret"), namespace=None)
            vault.hidden.add("secret")
            with pytest.raises(SyncError) as info:
                await checker.check(TOKEN, source("secret", kv="v1"), namespace=None)
        finally:
            await client.close()
    assert info.value.reason == PERMISSION_DENIED
    assert "v2" not in info.value.message
    assert vault.lookups() == ["/v1/sys/internal/ui/mounts/secret"] * 2


async def test_revoke_self_answering_204_with_a_json_content_type_succeeds() -> None:
    """OpenBao answers revoke-self 204 with an empty body; that is success, not invalid JSON."""

    async def no_content(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=204, headers={"Content-Type": "application/json"})

    vault = FakeVault(overrides={"/v1/auth/token/revoke-self": no_content})
    async with fake_vault(vault) as (vault, addr):
        client = VaultClient(addr)
        try:
            await client.revoke_self(TOKEN)
        finally:
            await client.close()
    assert vault.raw_paths("POST") == ["/v1/auth/token/revoke-self"]
