"""Property: whatever spec parse_spec accepts, every request the client builds for it is a KV read of its
own mount: `GET /v1/<mount>/data/<path>` (v2) or `GET /v1/<mount>/<path>` (v1), each segment percent-encoded,
no dot segment before or after decoding, no query but `version`, never a system mount. Checked on the raw
request line that a real local HTTP server receives."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import quote, unquote

from hypothesis import HealthCheck, event, given, settings

from tests.unit.fake_vault import FakeVault, fake_vault
from tests.unit.strategies import vaultsecret_specs
from vaultsync.core.errors import SyncError
from vaultsync.core.spec import SourceSpec, parse_spec
from vaultsync.vault.client import VaultClient, VaultToken

SYSTEM_MOUNTS = ("sys", "auth", "identity", "cubbyhole")  # written out: the test's own oracle
TOKEN = VaultToken(client_token="s.test", accessor="acc", lease_duration=0, renewable=False, obtained_at=0)


async def _requests_for(sources: tuple[SourceSpec, ...]) -> list[tuple[str, str]]:
    vault = FakeVault(mounts={})  # every read answers 404: only the request line matters here
    async with fake_vault(vault) as (_, addr):
        client = VaultClient(addr)
        try:
            for source in sources:
                with contextlib.suppress(SyncError):
                    await client.read_kv(
                        TOKEN, mount=source.mount, path=source.path, kv=source.kv, version=source.version
                    )
        finally:
            await client.close()
    return vault.seen


def _encoded(text: str) -> str:
    return "/".join(quote(segment, safe="") for segment in text.split("/"))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=vaultsecret_specs)
def test_every_accepted_spec_only_reads_kv_data_of_its_own_mount(spec: dict[str, Any]) -> None:
    try:
        parsed = parse_spec(spec, name="x", default_mount="secret")
    except SyncError:
        event("refused by the parser")
        return
    event("accepted: requests checked")
    seen = asyncio.run(_requests_for(parsed.sources))
    assert len(seen) == len(parsed.sources)
    for source, (method, raw) in zip(parsed.sources, seen, strict=True):
        assert method == "GET"
        raw_path, _, query = raw.partition("?")
        middle = "/data/" if source.kv == "v2" else "/"
        assert raw_path == f"/v1/{_encoded(source.mount)}{middle}{_encoded(source.path)}"
        assert query == (f"version={source.version}" if source.version else "")
        assert "#" not in raw
        # No dot or empty segment, neither raw nor once the server has decoded it ...
        raw_segments = raw_path.split("/")[2:]
        decoded_segments = [unquote(segment) for segment in raw_segments]
        for segments in (raw_segments, decoded_segments):
            assert not {"", ".", ".."} & set(segments), raw
        # ... and decoding gives back exactly the spec's own segments (no '/', '?' or '#' is smuggled in).
        data = ["data"] if source.kv == "v2" else []
        expected = [*source.mount.split("/"), *data, *source.path.split("/")]
        assert decoded_segments == expected
        assert decoded_segments[0].lower() not in SYSTEM_MOUNTS
