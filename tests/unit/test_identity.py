"""Who a VaultSecret logs in as (`identity_for`'s decision table), and failed logins shared per identity."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from vaultsync.core.errors import AUTH_FAILED, INVALID_SPEC, VAULT_UNAVAILABLE, SyncError
from vaultsync.core.spec import AuthSpec
from vaultsync.doctor import audience_problem
from vaultsync.settings import Settings
from vaultsync.vault.client import LoginRefused, VaultToken
from vaultsync.vault.identity import (
    Identity,
    ServiceAccountJwts,
    TokenFileJwt,
    VaultSessions,
    backoff_delay,
    identity_for,
)

SETTINGS = Settings(auth_role="vaultsync", auth_audience="vault", vault_namespace="ops")
NO_AUTH = AuthSpec(None, None, None, None, None, None)


def auth(**fields: str) -> AuthSpec:
    return replace(NO_AUTH, **fields)


# identity_for: the decision table --------------------------------------------------------------------------


def test_no_auth_is_the_operators_own_identity_from_the_settings() -> None:
    assert identity_for("team-a", NO_AUTH, SETTINGS) == Identity(
        method="kubernetes", mount="kubernetes", role="vaultsync", vault_namespace="ops"
    )


def test_a_service_account_takes_every_field_from_the_spec() -> None:
    spec = AuthSpec("app", "tenant-a", "jwt", "jwt/cluster", "other", "team-ns")
    assert identity_for("team-a", spec, SETTINGS) == Identity(
        method="jwt",
        mount="jwt/cluster",
        role="tenant-a",
        vault_namespace="team-ns",
        sa_namespace="team-a",
        sa_name="app",
        audience="other",
    )


def test_a_service_account_falls_back_to_the_settings() -> None:
    identity = identity_for("team-a", auth(service_account_name="app"), SETTINGS)
    assert (identity.method, identity.mount, identity.role, identity.vault_namespace, identity.audience) == (
        "kubernetes",
        "kubernetes",
        "vaultsync",
        "ops",
        "vault",
    )
    assert (identity.sa_namespace, identity.sa_name) == ("team-a", "app")


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("mount", "tenant-controlled", "spec.auth.mount"),
        ("role", "tenant-role", "spec.auth.role"),
        ("method", "jwt", "spec.auth.method"),
        ("vault_namespace", "tenant-ns", "spec.auth.vaultNamespace"),
    ],
)
def test_the_default_identity_refuses_a_tenant_override(field: str, value: str, named: str) -> None:
    with pytest.raises(SyncError) as raised:
        identity_for("team-a", auth(**{field: value}), SETTINGS)
    assert raised.value.reason == INVALID_SPEC
    assert named in raised.value.message
    assert "set spec.auth.serviceAccountName" in raised.value.message
    assert "VAULTSYNC_ALLOW_DEFAULT_IDENTITY_OVERRIDES=true" in raised.value.message


def test_the_hostile_mount_and_role_are_both_named() -> None:
    with pytest.raises(SyncError) as raised:
        identity_for("team-a", auth(mount="evil", role="x"), SETTINGS)
    assert "spec.auth.mount and spec.auth.role may not be set" in raised.value.message


def test_a_value_equal_to_the_setting_is_no_override() -> None:
    spec = auth(method="kubernetes", mount="kubernetes", role="vaultsync", vault_namespace="ops")
    assert identity_for("team-a", spec, SETTINGS) == identity_for("team-a", NO_AUTH, SETTINGS)


def test_the_setting_allows_overrides_of_the_default_identity() -> None:
    allowed = replace(SETTINGS, allow_default_identity_overrides=True)
    spec = auth(mount="other", role="r", method="jwt", vault_namespace="n")
    assert identity_for("team-a", spec, allowed) == Identity(
        method="jwt", mount="other", role="r", vault_namespace="n"
    )


@pytest.mark.parametrize("allow", [False, True])
def test_an_audience_without_a_service_account_is_refused(allow: bool) -> None:
    settings = replace(SETTINGS, allow_default_identity_overrides=allow)
    with pytest.raises(SyncError) as raised:
        identity_for("team-a", auth(audience="vault"), settings)
    assert raised.value.reason == INVALID_SPEC
    assert "spec.auth.audience applies only with spec.auth.serviceAccountName" in raised.value.message


def test_the_fence_comes_first_and_is_auth_failed() -> None:
    fenced = replace(SETTINGS, default_identity_namespaces=("platform-*",))
    with pytest.raises(SyncError) as raised:
        identity_for("team-a", auth(mount="evil"), fenced)
    assert raised.value.reason == AUTH_FAILED
    assert "VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES" in raised.value.message
    assert identity_for("platform-x", NO_AUTH, fenced).is_default
    # A ServiceAccount of a fenced namespace is its own identity.
    assert not identity_for("team-a", auth(service_account_name="app"), fenced).is_default


def test_without_a_namespace_the_fence_is_not_checked() -> None:
    fenced = replace(SETTINGS, default_identity_namespaces=("platform",))
    assert identity_for(None, NO_AUTH, fenced).is_default


# Backoff -----------------------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    for failures, low, high in [(1, 1.6, 2.4), (2, 3.2, 4.8), (3, 6.4, 9.6), (10, 48.0, 60.0), (99, 48, 60)]:
        delays = [backoff_delay(failures, 2.0, 60.0) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= high
        assert len(set(delays)) > 100  # jitter: not in lockstep


class FakeVault:
    def __init__(self) -> None:
        self.logins = 0
        self.refuse: SyncError | None = LoginRefused(
            "refused", status=400, detail='invalid role name "vaultsync"'
        )

    async def login(self, *, mount: str, role: str | None, jwt: str, namespace: str | None) -> VaultToken:
        self.logins += 1
        await asyncio.sleep(0.01)  # a real request: other syncs queue up meanwhile
        if self.refuse is not None:
            raise self.refuse
        return VaultToken(
            client_token="not-a-real-token",
            accessor="accessor",
            lease_duration=3600,
            renewable=True,
            obtained_at=time.monotonic(),
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sessions(vault: FakeVault, clock: Clock, requester: Any = None, tmp_file: Any = None) -> VaultSessions:
    async def no_requests(namespace: str, name: str, audience: str | None, seconds: int) -> tuple[str, float]:
        raise AssertionError("no TokenRequest expected")

    return VaultSessions(
        vault,  # type: ignore[arg-type]
        TokenFileJwt(str(tmp_file)),
        ServiceAccountJwts(requester or no_requests, 3600),
        backoff_base=2.0,
        backoff_max=60.0,
        clock=clock,
    )


DEFAULT = Identity("kubernetes", "kubernetes", "vaultsync", None)
TENANT = Identity("kubernetes", "kubernetes", "tenant-a", None, "team-a", "app", None, "vault")


async def attempt_all(s: VaultSessions, identity: Identity, n: int) -> list[BaseException | Any]:
    return await asyncio.gather(*(s.token(identity) for _ in range(n)), return_exceptions=True)


async def test_forty_syncs_on_a_refused_identity_make_one_login(tmp_path: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not-a-jwt")
    vault, clock = FakeVault(), Clock()
    s = sessions(vault, clock, tmp_file=token_file)
    results = await attempt_all(s, DEFAULT, 40)
    assert vault.logins == 1
    assert all(isinstance(r, SyncError) and r.reason == AUTH_FAILED for r in results)
    assert len({r.message for r in results if isinstance(r, SyncError)}) == 1
    assert "role vaultsync does not exist at auth/kubernetes" in results[0].message
    assert s.backing_off(DEFAULT)

    # While backing off: the same error at once, no login.
    clock.now += 1.0
    again = await attempt_all(s, DEFAULT, 40)
    assert vault.logins == 1
    assert {r.message for r in again if isinstance(r, SyncError)} == {results[0].message}

    # After the backoff, one attempt again; its failure doubles the wait (2 s, then 4 s, +-20 %).
    clock.now += 1.5
    await attempt_all(s, DEFAULT, 40)
    assert vault.logins == 2
    clock.now += 2.5
    await attempt_all(s, DEFAULT, 40)
    assert vault.logins == 2
    clock.now += 2.5

    # Fixed in Vault: the next attempt logs in, every waiting sync gets the token, the backoff is gone.
    vault.refuse = None
    tokens = await attempt_all(s, DEFAULT, 40)
    assert vault.logins == 3
    assert all(not isinstance(t, BaseException) for t in tokens)
    assert not s.backing_off(DEFAULT)


async def test_a_failed_token_request_is_shared_too(tmp_path: Any) -> None:
    requests = 0

    async def missing(namespace: str, name: str, audience: str | None, seconds: int) -> tuple[str, float]:
        nonlocal requests
        requests += 1
        await asyncio.sleep(0.01)
        raise SyncError(AUTH_FAILED, f"ServiceAccount {namespace}/{name} does not exist")

    vault, clock = FakeVault(), Clock()
    s = sessions(vault, clock, requester=missing, tmp_file=tmp_path / "none")
    results = await attempt_all(s, TENANT, 40)
    assert requests == 1
    assert vault.logins == 0
    assert all(isinstance(r, SyncError) and "does not exist" in r.message for r in results)
    # Another identity is not held back by this one's failures.
    other = replace(TENANT, sa_name="other")
    await attempt_all(s, other, 3)
    assert requests == 2


async def test_vault_unavailable_at_login_is_shared(tmp_path: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not-a-jwt")
    vault, clock = FakeVault(), Clock()
    vault.refuse = SyncError(VAULT_UNAVAILABLE, "cannot reach Vault")
    s = sessions(vault, clock, tmp_file=token_file)
    results = await attempt_all(s, DEFAULT, 10)
    assert vault.logins == 1
    assert all(isinstance(r, SyncError) and r.reason == VAULT_UNAVAILABLE for r in results)


# The doctor's audience check -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"aud": ["vault"], "iss": "https://issuer.example"}, None),
        ({"aud": "vault", "iss": "https://issuer.example"}, None),
        ({"aud": ["https://issuer.example"], "iss": "https://issuer.example"}, "https://issuer.example"),
        ({"aud": ["https://kubernetes.default.svc"], "iss": "x"}, "https://kubernetes.default.svc"),
        ({"aud": ["vault", "https://issuer.example"], "iss": "https://issuer.example"}, "API server"),
        ({"iss": "kubernetes/serviceaccount"}, "no audience"),
    ],
)
def test_audience_problem(claims: dict[str, Any], problem: str | None) -> None:
    found = audience_problem(claims)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
