"""What the operator tells the user when Vault refuses a login, and the default-identity fence's patterns."""

from __future__ import annotations

import pytest

from vaultsync.settings import load_settings
from vaultsync.vault.client import LoginRefused
from vaultsync.vault.identity import Identity, login_refused_message

TENANT = Identity("kubernetes", "kubernetes", "tenant-a", None, "team-a", "app", "uid-1", "vault")
DEFAULT = Identity("jwt", "jwt", "vaultsync", None)


def message(identity: Identity, status: int, detail: str) -> str:
    return login_refused_message(identity, LoginRefused("refused", status=status, detail=detail))


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        (400, 'invalid role name "tenant-a"', "role tenant-a does not exist at auth/kubernetes"),
        (400, 'role "tenant-a" could not be found', "role tenant-a does not exist at auth/kubernetes"),
        (
            400,
            "missing role",
            "no Vault role was given: set spec.auth.role or the setting VAULTSYNC_AUTH_ROLE",
        ),
        (403, "service account name not authorized", "role tenant-a does not bind ServiceAccount team-a/app"),
        (403, "namespace not authorized", "role tenant-a does not bind ServiceAccount team-a/app"),
        (
            400,
            "error validating token: invalid subject (sub) claim",
            "does not bind ServiceAccount team-a/app",
        ),
        (400, "error validating token: invalid audience (aud) claim", "set spec.auth.audience"),
        (403, "permission denied", "no auth method accepts logins at auth/kubernetes: fix spec.auth.mount"),
        (403, "lookup failed: service account unauthorized", "Kubernetes TokenReview API"),
        (400, "error validating token: failed to verify id token signature", "jwt_validation_pubkeys"),
        (400, "something new", "Vault refused the login at auth/kubernetes (role tenant-a)"),
    ],
)
def test_each_refusal_says_what_to_fix(status: int, detail: str, expected: str) -> None:
    text = message(TENANT, status, detail)
    assert expected in text
    assert text.startswith("ServiceAccount team-a/app (auth/kubernetes, method kubernetes, role tenant-a): ")
    assert text.endswith(f"(Vault: {detail})")


def test_the_default_identity_is_named_as_the_operators_own() -> None:
    text = message(DEFAULT, 400, "error validating token: invalid subject (sub) claim")
    assert "role vaultsync does not bind the operator's own ServiceAccount" in text
    assert "enable and configure the jwt auth method there" in message(DEFAULT, 403, "permission denied")


@pytest.mark.parametrize(
    ("setting", "allowed", "fenced"),
    [
        ("", ["anything", "kube-system"], []),
        ("team-a", ["team-a"], ["team-b", "team-a-dev"]),
        ("platform,platform-*", ["platform", "platform-db"], ["platformx", "team-a"]),
        ("team-?", ["team-a"], ["team-ab"]),
    ],
)
def test_default_identity_namespaces_take_names_and_globs(
    setting: str, allowed: list[str], fenced: list[str]
) -> None:
    settings = load_settings(None, {"VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES": setting})
    assert all(settings.default_identity_allowed(ns) for ns in allowed)
    assert not any(settings.default_identity_allowed(ns) for ns in fenced)
