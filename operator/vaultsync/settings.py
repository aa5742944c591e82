"""Operator settings: every setting is a command-line flag with an environment-variable twin.

The names of the contract's settings are fixed (`VAULT_ADDR`, `VAULTSYNC_AUTH_ROLE`, ...); the flag of a
setting is its variable name without the `VAULTSYNC_` prefix, lower-cased, with dashes (`--auth-role`).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vaultsync.core.duration import parse_duration

DEFAULT_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path, not a secret
POD_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port (0-65535; 0 disables)")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} must be at least 1")
    return value


def _mebibytes(text: str) -> int:
    value = int(text)
    if value < 64:
        raise ValueError(f"{value} MiB is too little: a render worker needs at least 64 MiB")
    return value


def _seconds(text: str) -> float:
    return parse_duration(text)


def _log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError(f"'{text}' is not a log format: use text or json")
    return text


def _auth_method(text: str) -> str:
    if text not in ("kubernetes", "jwt"):
        raise ValueError(f"'{text}' is not an auth method: use kubernetes or jwt")
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"'{text}' is not a boolean: use true or false")


def _optional(text: str) -> str | None:
    return text or None


@dataclass(frozen=True)
class Setting:
    """One setting: its environment variable, parser and help text."""

    attr: str
    env: str
    parse: Callable[[str], Any]
    help: str

    @property
    def flag(self) -> str:
        name = self.env.removeprefix("VAULTSYNC_").lower().replace("_", "-")
        return f"--{name}"


@dataclass(frozen=True)
class Settings:
    """The operator's configuration (see docs/configuration.md for each setting)."""

    vault_addr: str | None = None
    vault_cacert: str | None = None
    vault_namespace: str | None = None
    vault_timeout: float = 10.0
    auth_method: str = "kubernetes"
    auth_mount: str = "kubernetes"
    auth_role: str | None = None
    auth_audience: str | None = None
    token_file: str = DEFAULT_TOKEN_FILE
    namespace: str | None = None
    watch_namespaces: tuple[str, ...] = ()
    default_identity_namespaces: tuple[str, ...] = ()
    allow_default_identity_overrides: bool = False
    default_mount: str = "secret"
    default_refresh: float = 3600.0
    refresh_jitter: float = 0.1
    metrics_port: int = 8080
    health_port: int = 8081
    listen_address: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod
    log_format: str = "text"
    log_level: str = "INFO"
    concurrency: int = 32
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    login_backoff_base: float = 2.0
    login_backoff_max: float = 60.0
    service_account_token_ttl: int = 3600
    leader_election: bool = False
    render_workers: int = 4
    render_memory: int = 256
    render_timeout: float = 5.0
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def operator_namespace(self) -> str:
        """The namespace that holds the HMAC key Secret: the setting, else the pod's namespace."""
        if self.namespace:
            return self.namespace
        try:
            return Path(POD_NAMESPACE_FILE).read_text().strip() or "vaultsync-system"
        except OSError:
            return "vaultsync-system"

    def default_identity_allowed(self, namespace: str) -> bool:
        """Whether VaultSecrets of this namespace may use the operator's own Vault identity (names or glob
        patterns such as `platform-*`, like VAULTSYNC_WATCH_NAMESPACES)."""
        patterns = self.default_identity_namespaces
        return not patterns or any(fnmatch.fnmatchcase(namespace, pattern) for pattern in patterns)


SETTINGS: tuple[Setting, ...] = (
    Setting("vault_addr", "VAULT_ADDR", str, "Vault or OpenBao address, e.g. https://vault.vault.svc:8200"),
    Setting("vault_cacert", "VAULT_CACERT", _optional, "CA bundle file to verify Vault's TLS certificate"),
    Setting("vault_namespace", "VAULT_NAMESPACE", _optional, "Vault Enterprise/OpenBao namespace header"),
    Setting(
        "vault_timeout", "VAULTSYNC_VAULT_TIMEOUT", _seconds, "timeout of one Vault request (default 10s)"
    ),
    Setting("auth_method", "VAULTSYNC_AUTH_METHOD", _auth_method, "default login method: kubernetes or jwt"),
    Setting("auth_mount", "VAULTSYNC_AUTH_MOUNT", str, "default auth mount (default kubernetes)"),
    Setting("auth_role", "VAULTSYNC_AUTH_ROLE", _optional, "default Vault role"),
    Setting("auth_audience", "VAULTSYNC_AUTH_AUDIENCE", _optional, "audience of requested SA tokens"),
    Setting("token_file", "VAULTSYNC_TOKEN_FILE", str, "the operator's own service-account JWT file"),
    Setting("namespace", "VAULTSYNC_NAMESPACE", _optional, "the operator's namespace (HMAC key Secret)"),
    Setting(
        "watch_namespaces", "VAULTSYNC_WATCH_NAMESPACES", _csv, "comma-separated namespaces (default all)"
    ),
    Setting(
        "default_identity_namespaces",
        "VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES",
        _csv,
        "namespaces (names or globs) allowed to use the operator's own identity (default all; set it on "
        "shared clusters)",
    ),
    Setting(
        "allow_default_identity_overrides",
        "VAULTSYNC_ALLOW_DEFAULT_IDENTITY_OVERRIDES",
        _bool,
        "true: VaultSecrets without spec.auth.serviceAccountName may set spec.auth.mount, role, method and "
        "vaultNamespace for the operator's own identity (default false: InvalidSpec)",
    ),
    Setting("default_mount", "VAULTSYNC_DEFAULT_MOUNT", str, "mount used when spec.mount is unset"),
    Setting("default_refresh", "VAULTSYNC_DEFAULT_REFRESH", _seconds, "refresh when unset (default 1h)"),
    Setting("metrics_port", "VAULTSYNC_METRICS_PORT", _port, "Prometheus metrics port (0 disables)"),
    Setting("health_port", "VAULTSYNC_HEALTH_PORT", _port, "liveness/readiness port (0 disables)"),
    Setting("listen_address", "VAULTSYNC_LISTEN_ADDRESS", str, "address of the metrics/health servers"),
    Setting("log_format", "VAULTSYNC_LOG_FORMAT", _log_format, "text or json"),
    Setting("log_level", "VAULTSYNC_LOG_LEVEL", str.upper, "DEBUG, INFO, WARNING or ERROR"),
    Setting("concurrency", "VAULTSYNC_CONCURRENCY", _positive_int, "syncs running at once (default 32)"),
    Setting("backoff_base", "VAULTSYNC_BACKOFF_BASE", _seconds, "first retry delay after a failure (1s)"),
    Setting("backoff_max", "VAULTSYNC_BACKOFF_MAX", _seconds, "cap of the retry delay (default 60s)"),
    Setting(
        "login_backoff_base",
        "VAULTSYNC_LOGIN_BACKOFF_BASE",
        _seconds,
        "wait after an identity's first failed login or TokenRequest before the next attempt (default 2s)",
    ),
    Setting(
        "login_backoff_max",
        "VAULTSYNC_LOGIN_BACKOFF_MAX",
        _seconds,
        "cap of the wait between an identity's failed login attempts (default 60s)",
    ),
    Setting(
        "service_account_token_ttl",
        "VAULTSYNC_SA_TOKEN_TTL",
        _positive_int,
        "lifetime in seconds of TokenRequest tokens for spec.auth.serviceAccountName (default 3600)",
    ),
    Setting(
        "leader_election",
        "VAULTSYNC_LEADER_ELECTION",
        _bool,
        "true: replicas elect one leader by a Lease in the operator namespace (needed for replicas > 1)",
    ),
    Setting(
        "render_workers",
        "VAULTSYNC_RENDER_WORKERS",
        _positive_int,
        "worker processes that render templates and check Secret types (default 4)",
    ),
    Setting(
        "render_memory",
        "VAULTSYNC_RENDER_MEMORY",
        _mebibytes,
        "address-space limit of one render worker, in MiB (default 256; at least 64)",
    ),
    Setting(
        "render_timeout",
        "VAULTSYNC_RENDER_TIMEOUT",
        _seconds,
        "wall-clock (and CPU) limit of one render; the worker is killed past it (default 5s)",
    ),
)


def add_arguments(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """Adds one flag per setting (or per setting named in `only`); the environment gives the default."""
    for setting in SETTINGS:
        if only is not None and setting.attr not in only:
            continue
        parser.add_argument(
            setting.flag, dest=setting.attr, default=None, help=f"{setting.help} [{setting.env}]"
        )


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


def load_settings(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Flags win over environment variables, which win over defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = getattr(args, setting.attr, None) if args is not None else None
        source = setting.flag
        if raw is None:
            raw = env.get(setting.env)
            source = setting.env
        if raw is None:
            continue
        try:
            values[setting.attr] = setting.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{source}: {exc}") from None
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})


def setting_table() -> Sequence[tuple[str, str, str]]:
    """(variable, flag, help) rows for the docs and `vaultsync run --help`."""
    return [(s.env, s.flag, s.help) for s in SETTINGS]
