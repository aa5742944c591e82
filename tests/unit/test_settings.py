"""Settings: flags over environment variables over defaults; bad values say what to do."""

from __future__ import annotations

import argparse

import pytest

from vaultsync.settings import SETTINGS, SettingsError, add_arguments, load_settings


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults() -> None:
    settings = load_settings(parse([]), {})
    assert settings.auth_method == "kubernetes"
    assert settings.auth_mount == "kubernetes"
    assert settings.default_mount == "secret"
    assert settings.token_file == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert settings.watch_namespaces == ()
    assert settings.default_identity_allowed("anything")


def test_environment_and_flags() -> None:
    env = {
        "VAULT_ADDR": "http://v:8200",
        "VAULTSYNC_AUTH_ROLE": "env-role",
        "VAULTSYNC_WATCH_NAMESPACES": "a, b",
    }
    settings = load_settings(parse(["--auth-role", "flag-role", "--backoff-max", "30s"]), env)
    assert settings.vault_addr == "http://v:8200"
    assert settings.auth_role == "flag-role"
    assert settings.watch_namespaces == ("a", "b")
    assert settings.backoff_max == 30.0


def test_fixed_contract_names_exist() -> None:
    names = {s.env for s in SETTINGS}
    for fixed in (
        "VAULT_ADDR",
        "VAULT_CACERT",
        "VAULT_NAMESPACE",
        "VAULTSYNC_AUTH_METHOD",
        "VAULTSYNC_AUTH_MOUNT",
        "VAULTSYNC_AUTH_ROLE",
        "VAULTSYNC_AUTH_AUDIENCE",
        "VAULTSYNC_TOKEN_FILE",
        "VAULTSYNC_NAMESPACE",
        "VAULTSYNC_WATCH_NAMESPACES",
        "VAULTSYNC_DEFAULT_MOUNT",
        "VAULTSYNC_METRICS_PORT",
        "VAULTSYNC_HEALTH_PORT",
        "VAULTSYNC_LOG_FORMAT",
    ):
        assert fixed in names


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ({"VAULTSYNC_LOG_FORMAT": "xml"}, "text or json"),
        ({"VAULTSYNC_AUTH_METHOD": "ldap"}, "kubernetes or jwt"),
        ({"VAULTSYNC_METRICS_PORT": "70000"}, "TCP port"),
        ({"VAULTSYNC_BACKOFF_MAX": "soon"}, "VAULTSYNC_BACKOFF_MAX"),
        ({"VAULTSYNC_LEADER_ELECTION": "maybe"}, "true or false"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], text: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(parse([]), env)
    assert text in str(raised.value)


def test_default_identity_fence() -> None:
    settings = load_settings(parse([]), {"VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES": "team-a"})
    assert settings.default_identity_allowed("team-a")
    assert not settings.default_identity_allowed("team-b")
