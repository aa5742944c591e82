"""Parse and validate a VaultSecret's ``spec`` into frozen dataclasses.

:func:`parse_spec` checks everything the CRD schema checks (the installed CRD may be older, or
someone may have applied the resource with validation off) and a few things a schema cannot
express (``path`` xor ``sources``, ``version`` only with ``kv: v2``, ...). Every problem raises
``SyncError(INVALID_SPEC, message)`` where the message names the field and says what to do.
Unknown fields are ignored.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .convert import is_valid_secret_key
from .duration import parse_duration
from .errors import INVALID_SPEC, SyncError

__all__ = [
    "CREATION_POLICIES",
    "KV_VERSIONS",
    "MAX_SOURCES",
    "RESERVED_METADATA_PREFIX",
    "ROLLOUT_KINDS",
    "SYSTEM_MOUNTS",
    "AuthSpec",
    "RolloutTarget",
    "SourceSpec",
    "TargetSpec",
    "VaultSecretSpec",
    "is_dns_subdomain",
    "parse_spec",
]

KvVersion = Literal["v1", "v2"]
CreationPolicy = Literal["Owner", "Orphan", "Merge"]
RolloutKind = Literal["Deployment", "StatefulSet", "DaemonSet"]
AuthMethod = Literal["kubernetes", "jwt"]

KV_VERSIONS: tuple[KvVersion, ...] = ("v1", "v2")
CREATION_POLICIES: tuple[CreationPolicy, ...] = ("Owner", "Orphan", "Merge")
ROLLOUT_KINDS: tuple[RolloutKind, ...] = ("Deployment", "StatefulSet", "DaemonSet")
AUTH_METHODS: tuple[AuthMethod, ...] = ("kubernetes", "jwt")
SERVICE_ACCOUNT_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105

RESERVED_METADATA_PREFIX = "vaultsync.io"
"""Label and annotation keys under this prefix (and its subdomains) belong to the operator."""

_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_QUALIFIED_NAME = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_MAX_ANNOTATIONS_BYTES = 256 * 1024
_SHOW_MAX = 80
_MAX_PATH_LENGTH = 1024
_MAX_MOUNT_LENGTH = 512
MAX_SOURCES = 16
"""At most this many ``spec.sources`` (the CRD's ``maxItems``)."""
SYSTEM_MOUNTS = ("sys", "auth", "identity", "cubbyhole")
"""Vault's own mounts: never a VaultSecret's mount, nor anything under them (compared case-insensitively)."""
_PATH_FORBIDDEN = frozenset("%\\?#")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One KV secret to read: ``mount``/``path``, KV engine version, optional pinned version."""

    mount: str
    path: str
    kv: KvVersion
    version: int | None
    where: str = field(default="spec", compare=False)
    """Where the source is written: ``spec`` (the path form) or ``spec.sources[i]``, for messages."""

    @property
    def label(self) -> str:
        """``mount/path``: the key in ``status.vaultVersion`` and the name used in messages."""
        return f"{self.mount}/{self.path}"

    @property
    def mount_field(self) -> str:
        return f"{self.where}.mount"

    @property
    def kv_field(self) -> str:
        return f"{self.where}.kv"


@dataclass(frozen=True, slots=True)
class AuthSpec:
    """How to log in to Vault; ``None`` fields fall back to the operator's settings."""

    service_account_name: str | None
    role: str | None
    method: str | None
    mount: str | None
    audience: str | None
    vault_namespace: str | None


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """The Secret written: its name, extra labels/annotations and creation policy."""

    name: str
    labels: Mapping[str, str] = field(hash=False)
    annotations: Mapping[str, str] = field(hash=False)
    creation_policy: CreationPolicy


@dataclass(frozen=True, slots=True)
class RolloutTarget:
    """A workload restarted when the Secret's data changes."""

    kind: RolloutKind
    name: str


@dataclass(frozen=True, slots=True)
class VaultSecretSpec:
    """A validated VaultSecret spec. The ``path`` form is normalised to a single source."""

    sources: tuple[SourceSpec, ...]
    keys: tuple[str, ...] | None
    templates: Mapping[str, str] = field(hash=False)
    templates_only: bool
    secret_type: str
    decode_base64_keys: tuple[str, ...]
    target: TargetSpec
    refresh_interval: float
    auth: AuthSpec
    rollout_restart_targets: tuple[RolloutTarget, ...]


def is_dns_subdomain(name: str) -> bool:
    """True if ``name`` is a Kubernetes DNS subdomain name (RFC 1123, at most 253 characters)."""
    return isinstance(name, str) and 0 < len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name) is not None


# --------------------------------------------------------------------------------------------- helpers


def _show(value: Any) -> str:
    """A short, printable rendering of a spec value for messages (spec values are not secrets)."""
    text = repr(value)
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 3] + "..."
    return text


def _fail(message: str) -> SyncError:
    return SyncError(INVALID_SPEC, message)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _opt_str(spec: Mapping[str, Any], key: str, field_name: str) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"{field_name} must be a string, not {_type_name(value)} ({_show(value)})")
    return value


def _opt_nonempty_str(spec: Mapping[str, Any], key: str, field_name: str) -> str | None:
    value = _opt_str(spec, key, field_name)
    if value is not None and not value.strip():
        raise _fail(f"{field_name} is empty: remove it to use the operator's default, or set a value")
    return value


def _opt_mapping(spec: Mapping[str, Any], key: str, field_name: str) -> Mapping[str, Any] | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(f"{field_name} must be an object, not {_type_name(value)}")
    return value


def _opt_list(spec: Mapping[str, Any], key: str, field_name: str) -> list[Any] | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _fail(f"{field_name} must be a list, not {_type_name(value)} ({_show(value)})")
    return list(value)


def _has_control_chars(text: str) -> bool:
    """C0, DEL and C1 control characters (the CRD's ``\\x00-\\x1f\\x7f-\\x9f``)."""
    return any(unicodedata.category(c) == "Cc" for c in text)


def _check_header_value(value: str | None, field_name: str) -> str | None:
    """Fields sent in HTTP headers or login bodies (role, audience, Vault namespace)."""
    if value is not None and _has_control_chars(value):
        raise _fail(f"{field_name} {_show(value)} contains control characters: remove them")
    return value


def _check_vault_path(value: Any, field_name: str, what: str, example: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"{field_name} must be a string like {example!r}, not {_type_name(value)}")
    if not value:
        raise _fail(f"{field_name} is empty: set the {what}, e.g. {example!r}")
    limit = _MAX_PATH_LENGTH if what == "path" else _MAX_MOUNT_LENGTH
    if len(value) > limit:
        raise _fail(f"{field_name} is {len(value)} characters long; at most {limit} are allowed")
    if value.startswith("/") or value.endswith("/"):
        raise _fail(
            f"{field_name} {_show(value)} must not start or end with '/': write it like {example!r}"
            + (" (the mount goes in the mount field, not in the path)" if what == "path" else "")
        )
    bad = next((c for c in value if c in _PATH_FORBIDDEN or _has_control_chars(c)), None)
    if bad is not None:
        found = f"a control character (U+{ord(bad):04X})" if _has_control_chars(bad) else repr(bad)
        raise _fail(
            f"{field_name} {_show(value)} contains {found}: a Vault {what} here may not hold '%', '\\', "
            f"'?', '#' or control characters; write it plainly like {example!r} (the operator "
            "percent-encodes every segment itself)"
        )
    if any(seg in ("", ".", "..") for seg in value.split("/")):
        raise _fail(
            f"{field_name} {_show(value)} has an empty, '.' or '..' segment: write it like {example!r}"
        )
    return value


def _check_mount(value: Any, field_name: str) -> str:
    """A secrets engine mount: a Vault path that is not one of Vault's own mounts or under them."""
    mount = _check_vault_path(value, field_name, "mount", "secret")
    top = mount.split("/", 1)[0].lower()
    if top in SYSTEM_MOUNTS:
        raise _fail(
            f"{field_name} {_show(mount)} is (or is under) Vault's own {top} mount, which a VaultSecret may "
            "not read: set it to the KV secrets engine mount, e.g. 'secret'"
        )
    return mount


def _check_kv(value: Any, field_name: str) -> KvVersion:
    if value not in KV_VERSIONS or not isinstance(value, str):
        raise _fail(f"{field_name} {_show(value)} is not a KV engine version: use v1 or v2")
    return cast(KvVersion, value)


def _check_version(value: Any, kv: KvVersion, field_name: str, kv_field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{field_name} {_show(value)} must be an integer >= 1 (the KV v2 version to pin)")
    if value < 1:
        raise _fail(f"{field_name} is {value}: KV versions start at 1; remove it to read the latest version")
    if kv != "v2":
        raise _fail(f"{field_name} pins a version, which only KV v2 has: remove it or set {kv_field}: v2")
    return value


def _check_secret_key_list(value: list[Any], field_name: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _fail(f"{field_name}[{i}] must be a string, not {_type_name(item)}")
        if not is_valid_secret_key(item):
            raise _fail(
                f"{field_name}[{i}] {_show(item)} cannot be a Secret key: use 1-253 letters, digits, "
                "'-', '_' or '.' (not '.' or '..')"
            )
        seen.setdefault(item, None)
    return tuple(seen)


def _check_string_map(value: Any, field_name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(f"{field_name} must be an object of strings, not {_type_name(value)}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise _fail(f"{field_name} has a key that is not a string ({_show(k)})")
        if not isinstance(v, str):
            raise _fail(
                f'{field_name}.{k} must be a string, not {_type_name(v)}: quote it in YAML, e.g. "{_show(v)}"'
            )
        out[k] = v
    return out


def _check_qualified_key(key: str, field_name: str, kind: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        raise _fail(f"{field_name} key {_show(key)}: the prefix before '/' must be a DNS subdomain")
    if not (0 < len(name) <= 63 and _QUALIFIED_NAME.fullmatch(name)):
        raise _fail(
            f"{field_name} key {_show(key)} is not a valid {kind} key: the name part must be 1-63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    if slash and (prefix == RESERVED_METADATA_PREFIX or prefix.endswith("." + RESERVED_METADATA_PREFIX)):
        raise _fail(
            f"{field_name} key {_show(key)} uses the prefix {RESERVED_METADATA_PREFIX}/, which is reserved "
            "for the operator: use another prefix"
        )


def _check_labels(value: Any, field_name: str) -> dict[str, str]:
    labels = _check_string_map(value, field_name)
    for k, v in labels.items():
        _check_qualified_key(k, field_name, "label")
        if v and not (len(v) <= 63 and _QUALIFIED_NAME.fullmatch(v)):
            raise _fail(
                f"{field_name}.{k} value {_show(v)} is not a valid label value: use at most 63 letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit (or an empty string)"
            )
    return labels


def _check_annotations(value: Any, field_name: str) -> dict[str, str]:
    annotations = _check_string_map(value, field_name)
    total = 0
    for k, v in annotations.items():
        _check_qualified_key(k, field_name, "annotation")
        total += len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
    if total > _MAX_ANNOTATIONS_BYTES:
        raise _fail(
            f"{field_name} are {total:,} bytes; Kubernetes allows at most {_MAX_ANNOTATIONS_BYTES:,} "
            "(256 KiB): shorten or remove some"
        )
    return annotations


def _check_dns_name(value: Any, field_name: str, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"{field_name} must be a string (the {what}), not {_type_name(value)}")
    if not is_dns_subdomain(value):
        raise _fail(
            f"{field_name} {_show(value)} is not a valid {what}: use at most 253 lowercase letters, digits, "
            "'-' and '.', starting and ending with a letter or digit"
        )
    return value


# --------------------------------------------------------------------------------------------- parts


def _parse_sources(spec: Mapping[str, Any], default_mount: str) -> tuple[SourceSpec, ...]:
    path = spec.get("path")
    raw_sources = _opt_list(spec, "sources", "spec.sources")
    top_mount = spec.get("mount")
    top_kv = spec.get("kv")
    mount_default = (
        _check_mount(top_mount, "spec.mount")
        if top_mount is not None
        else _check_mount(default_mount, "the operator's default mount (VAULTSYNC_DEFAULT_MOUNT)")
    )
    kv_default = _check_kv(top_kv, "spec.kv") if top_kv is not None else "v2"

    if path is not None and raw_sources is not None:
        raise _fail(
            "spec.path and spec.sources are both set: use spec.path for one secret "
            "or spec.sources for several"
        )
    if path is None and raw_sources is None:
        raise _fail(
            "spec.path is missing: set spec.path (e.g. apps/shop/db) "
            "or spec.sources (a list of {path, mount, kv})"
        )

    if path is not None:
        source = SourceSpec(
            mount=mount_default,
            path=_check_vault_path(path, "spec.path", "path", "apps/shop/db"),
            kv=kv_default,
            version=_check_version(spec.get("version"), kv_default, "spec.version", "spec.kv"),
        )
        return (source,)

    assert raw_sources is not None
    if not raw_sources:
        raise _fail("spec.sources is empty: list at least one {path} or use spec.path")
    if spec.get("version") is not None:
        raise _fail("spec.version applies to spec.path only: with spec.sources, set version on each source")
    if len(raw_sources) > MAX_SOURCES:
        raise _fail(
            f"spec.sources has {len(raw_sources)} entries; at most {MAX_SOURCES} are allowed: "
            "split them over several VaultSecrets"
        )
    sources: list[SourceSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_sources):
        where = f"spec.sources[{i}]"
        if not isinstance(raw, Mapping):
            raise _fail(f"{where} must be an object like {{path: apps/shop/db}}, not {_type_name(raw)}")
        if raw.get("path") is None:
            raise _fail(
                f"{where}.path is missing: set the path of the secret inside the mount, e.g. apps/shop/db"
            )
        src_path = _check_vault_path(raw.get("path"), f"{where}.path", "path", "apps/shop/db")
        src_mount = (
            _check_mount(raw.get("mount"), f"{where}.mount")
            if raw.get("mount") is not None
            else mount_default
        )
        src_kv = _check_kv(raw.get("kv"), f"{where}.kv") if raw.get("kv") is not None else kv_default
        src_version = _check_version(raw.get("version"), src_kv, f"{where}.version", f"{where}.kv")
        source = SourceSpec(mount=src_mount, path=src_path, kv=src_kv, version=src_version, where=where)
        if source.label in seen:
            raise _fail(
                f"{where} reads {source.label}, which spec.sources[{seen[source.label]}] already reads: "
                "list each secret once"
            )
        seen[source.label] = i
        sources.append(source)
    return tuple(sources)


def _parse_target(spec: Mapping[str, Any], name: str) -> TargetSpec:
    target = _opt_mapping(spec, "target", "spec.target") or {}
    target_name = target.get("name")
    if target_name is None:
        target_name = name
        _check_dns_name(target_name, "metadata.name (the default of spec.target.name)", "Secret name")
    else:
        _check_dns_name(target_name, "spec.target.name", "Secret name")
    policy = target.get("creationPolicy")
    if policy is None:
        policy = "Owner"
    if policy not in CREATION_POLICIES or not isinstance(policy, str):
        raise _fail(f"spec.target.creationPolicy {_show(policy)} is not one of Owner, Orphan, Merge")
    return TargetSpec(
        name=target_name,
        labels=_check_labels(target.get("labels"), "spec.target.labels"),
        annotations=_check_annotations(target.get("annotations"), "spec.target.annotations"),
        creation_policy=cast(CreationPolicy, policy),
    )


def _parse_refresh(spec: Mapping[str, Any], default_refresh: float) -> float:
    value = spec.get("refreshInterval")
    if value is None:
        return float(default_refresh)
    hint = "use e.g. 30s, 5m, 1h30m or 0 (sync once)"
    if isinstance(value, bool):
        raise _fail(f"spec.refreshInterval {_show(value)} is not a duration: {hint}")
    if isinstance(value, int | float):
        if value == 0:
            return 0.0
        raise _fail(f"spec.refreshInterval {_show(value)} has no unit: write e.g. '{value}s' or {hint}")
    if not isinstance(value, str):
        raise _fail(f"spec.refreshInterval must be a string, not {_type_name(value)}: {hint}")
    try:
        return parse_duration(value)
    except ValueError:
        if value.strip().startswith("-"):
            raise _fail(f"spec.refreshInterval {_show(value)} is negative: {hint}") from None
        raise _fail(f"spec.refreshInterval {_show(value)} is not a duration: {hint}") from None


def _parse_auth(spec: Mapping[str, Any]) -> AuthSpec:
    auth = _opt_mapping(spec, "auth", "spec.auth") or {}
    sa = auth.get("serviceAccountName")
    if sa is not None:
        _check_dns_name(sa, "spec.auth.serviceAccountName", "ServiceAccount name")
    method = _opt_str(auth, "method", "spec.auth.method")
    if method is not None and method not in AUTH_METHODS:
        raise _fail(f"spec.auth.method {_show(method)} is not supported: use kubernetes or jwt")
    mount = _opt_str(auth, "mount", "spec.auth.mount")
    if mount is not None:
        _check_vault_path(mount, "spec.auth.mount", "auth mount", "kubernetes")
    return AuthSpec(
        service_account_name=sa,
        role=_check_header_value(_opt_nonempty_str(auth, "role", "spec.auth.role"), "spec.auth.role"),
        method=method,
        mount=mount,
        audience=_check_header_value(
            _opt_nonempty_str(auth, "audience", "spec.auth.audience"), "spec.auth.audience"
        ),
        vault_namespace=_check_header_value(
            _opt_nonempty_str(auth, "vaultNamespace", "spec.auth.vaultNamespace"), "spec.auth.vaultNamespace"
        ),
    )


def _parse_rollouts(spec: Mapping[str, Any]) -> tuple[RolloutTarget, ...]:
    raw = _opt_list(spec, "rolloutRestartTargets", "spec.rolloutRestartTargets") or []
    out: dict[RolloutTarget, None] = {}
    for i, item in enumerate(raw):
        where = f"spec.rolloutRestartTargets[{i}]"
        if not isinstance(item, Mapping):
            raise _fail(
                f"{where} must be an object like {{kind: Deployment, name: web}}, not {_type_name(item)}"
            )
        kind = item.get("kind")
        if kind not in ROLLOUT_KINDS or not isinstance(kind, str):
            raise _fail(f"{where}.kind {_show(kind)} is not one of Deployment, StatefulSet, DaemonSet")
        if item.get("name") is None:
            raise _fail(f"{where}.name is missing: set the name of the {kind} to restart")
        target_name = _check_dns_name(item.get("name"), f"{where}.name", f"{kind} name")
        out.setdefault(RolloutTarget(kind=cast(RolloutKind, kind), name=target_name), None)
    return tuple(out)


MAX_TEMPLATES = 64
"""Most entries in spec.templates (the CRD says the same with maxProperties)."""
MAX_TEMPLATE_LENGTH = 64 * 1024
"""Longest template source, in characters (the CRD's maxLength): compiling costs about 8 ms per KiB."""
MAX_TEMPLATES_LENGTH = 256 * 1024
"""Longest total of all template sources of one VaultSecret."""


def _parse_templates(spec: Mapping[str, Any]) -> dict[str, str]:
    raw = spec.get("templates")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _fail(f"spec.templates must be an object of Secret key -> template, not {_type_name(raw)}")
    if len(raw) > MAX_TEMPLATES:
        raise _fail(
            f"spec.templates has {len(raw)} entries; at most {MAX_TEMPLATES} are allowed: "
            "move some keys to another VaultSecret"
        )
    out: dict[str, str] = {}
    total = 0
    for key, template in raw.items():
        if not isinstance(key, str) or not is_valid_secret_key(key):
            raise _fail(
                f"spec.templates key {_show(key)} cannot be a Secret key: use 1-253 letters, digits, "
                "'-', '_' or '.' (not '.' or '..')"
            )
        if not isinstance(template, str):
            raise _fail(
                f"spec.templates.{key} must be a string (a Jinja2 template), not {_type_name(template)}"
            )
        if len(template) > MAX_TEMPLATE_LENGTH:
            raise _fail(
                f"spec.templates.{key} is {len(template):,} characters long; at most "
                f"{MAX_TEMPLATE_LENGTH:,} are allowed: shorten the template"
            )
        total += len(template)
        if total > MAX_TEMPLATES_LENGTH:
            raise _fail(
                f"spec.templates are more than {MAX_TEMPLATES_LENGTH:,} characters long together: "
                "shorten them or split the keys over several VaultSecrets"
            )
        out[key] = template
    return out


# --------------------------------------------------------------------------------------------- entry


def parse_spec(
    spec: Mapping[str, Any], *, name: str, default_mount: str, default_refresh: float = 3600.0
) -> VaultSecretSpec:
    """Validate a VaultSecret's ``spec`` and return it as a :class:`VaultSecretSpec`.

    ``name`` is the VaultSecret's ``metadata.name`` (the default ``target.name``), ``default_mount``
    the operator's mount setting (used when neither ``spec.mount`` nor a source's ``mount`` is set),
    ``default_refresh`` the refresh interval in seconds when ``spec.refreshInterval`` is unset.

    With ``spec.sources``, the top-level ``spec.mount`` and ``spec.kv`` are the defaults of each
    source. ``null`` fields count as unset; unknown fields are ignored.

    Raises ``SyncError(INVALID_SPEC, message)``; the message names the field and says what to do.
    """
    if not isinstance(spec, Mapping):
        raise _fail(f"spec must be an object, not {_type_name(spec)}")

    sources = _parse_sources(spec, default_mount)

    raw_keys = _opt_list(spec, "keys", "spec.keys")
    keys = _check_secret_key_list(raw_keys, "spec.keys") if raw_keys is not None else None

    templates = _parse_templates(spec)

    templates_only = spec.get("templatesOnly", False)
    if templates_only is None:
        templates_only = False
    if not isinstance(templates_only, bool):
        raise _fail(f"spec.templatesOnly {_show(templates_only)} must be true or false")
    if templates_only and not templates:
        raise _fail(
            "spec.templatesOnly is true but spec.templates is empty: add templates or remove templatesOnly"
        )
    if templates_only and keys is not None:
        raise _fail(
            "spec.keys has no effect with spec.templatesOnly: true "
            "(the Secret holds only the templated keys): "
            "remove spec.keys, or set templatesOnly: false"
        )
    if keys is not None and not keys and not templates:
        raise _fail(
            "spec.keys is empty, so the Secret would be empty: list the keys to copy, or remove spec.keys"
        )

    secret_type = spec.get("type")
    if secret_type is None:
        secret_type = "Opaque"  # noqa: S105
    if not isinstance(secret_type, str) or not secret_type.strip():
        raise _fail(
            f"spec.type {_show(secret_type)} must be a non-empty string, e.g. Opaque or kubernetes.io/tls"
        )
    if len(secret_type) > 253 or _has_control_chars(secret_type):
        raise _fail(f"spec.type {_show(secret_type)} is not a valid Secret type")
    if secret_type == SERVICE_ACCOUNT_TOKEN_TYPE:
        raise _fail(
            f"spec.type {SERVICE_ACCOUNT_TOKEN_TYPE} is refused: the operator does not forge ServiceAccount "
            "tokens; use Opaque or another type"
        )

    raw_decode = _opt_list(spec, "decodeBase64Keys", "spec.decodeBase64Keys")
    decode_keys = (
        _check_secret_key_list(raw_decode, "spec.decodeBase64Keys") if raw_decode is not None else ()
    )
    for key in decode_keys:
        if templates_only:
            raise _fail(
                f"spec.decodeBase64Keys lists {key!r}, but with spec.templatesOnly: true "
                "no Vault key is copied: "
                "decode it in the template with the b64decode filter, or remove it"
            )
        if keys is not None and key not in keys:
            raise _fail(
                f"spec.decodeBase64Keys lists {key!r}, which spec.keys does not select: add it to spec.keys"
            )
        if key in templates:
            raise _fail(
                f"spec.decodeBase64Keys lists {key!r}, which spec.templates also writes (templates win): "
                "remove one of them"
            )

    return VaultSecretSpec(
        sources=sources,
        keys=keys,
        templates=templates,
        templates_only=templates_only,
        secret_type=secret_type,
        decode_base64_keys=decode_keys,
        target=_parse_target(spec, name),
        refresh_interval=_parse_refresh(spec, default_refresh),
        auth=_parse_auth(spec),
        rollout_restart_targets=_parse_rollouts(spec),
    )
