"""Parse and validate a VaultSecret's ``spec`` into frozen dataclasses.

The checks of each field are driven by its declaration in :mod:`vaultsync.api.vaultsecret` (the same
one the CRD and docs/api.md are generated from): :func:`vaultsync.api.validate.validate` refuses what
the CRD schema refuses (the installed CRD may be older, or someone may have applied the resource with
validation off) and runs the semantic checks a field names; their code is here, in :data:`CHECKS`.
What spans fields (``path`` xor ``sources``, ``version`` only with ``kv: v2``, ``templatesOnly``'s
companions, ...) is the code of :func:`parse_spec`. Every problem raises
``SyncError(INVALID_SPEC, message)`` where the message names the field and says what to do.
Unknown fields are ignored.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

from vaultsync.api.common import (
    AUTH_METHODS,
    CREATION_POLICIES,
    MAX_ANNOTATIONS_BYTES,
    MAX_TEMPLATE_LENGTH,
    MAX_TEMPLATES,
    MAX_TEMPLATES_LENGTH,
    PATH_FORBIDDEN,
    RESERVED_METADATA_PREFIX,
    ROLLOUT_KINDS,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    SYSTEM_MOUNTS,
    AuthMethod,
    CreationPolicy,
    RolloutKind,
)
from vaultsync.api.validate import Check, Context, validate
from vaultsync.api.vaultsecret import KV_VERSIONS, MAX_SOURCES, SPEC, KvVersion

from .convert import is_valid_secret_key
from .duration import parse_duration
from .errors import INVALID_SPEC, SyncError

__all__ = [
    "AUTH_METHODS",
    "CHECKS",
    "CREATION_POLICIES",
    "KV_VERSIONS",
    "MAX_SOURCES",
    "MAX_TEMPLATES",
    "MAX_TEMPLATES_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "RESERVED_METADATA_PREFIX",
    "ROLLOUT_KINDS",
    "SERVICE_ACCOUNT_TOKEN_TYPE",
    "SYSTEM_MOUNTS",
    "AuthMethod",
    "AuthSpec",
    "CreationPolicy",
    "KvVersion",
    "RolloutKind",
    "RolloutTarget",
    "SourceSpec",
    "TargetSpec",
    "VaultSecretSpec",
    "is_dns_subdomain",
    "parse_spec",
]

_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_QUALIFIED_NAME = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
DEFAULT_MOUNT_FIELD: Final = "the operator's default mount (VAULTSYNC_DEFAULT_MOUNT)"


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


def _fail(message: str) -> SyncError:
    return SyncError(INVALID_SPEC, message)


# ---------------------------------------------------------------------------------- semantic checks
# Named by the fields they check (vaultsync.api); each gets the value, already of the field's JSON type.


def _has_control_chars(text: str) -> bool:
    """C0, DEL and C1 control characters (the CRD's ``\\x00-\\x1f\\x7f-\\x9f``)."""
    return any(unicodedata.category(c) == "Cc" for c in text)


def _check_vault_path(value: str, ctx: Context) -> None:
    """Segments of a path sent to Vault: nothing in it may reach another endpoint."""
    if value.startswith("/") or value.endswith("/"):
        raise ctx.fail("slash", "{field} {value} must not start or end with '/'")
    bad = next((c for c in value if c in PATH_FORBIDDEN or _has_control_chars(c)), None)
    if bad is not None:
        found = f"a control character (U+{ord(bad):04X})" if _has_control_chars(bad) else repr(bad)
        raise ctx.fail("char", "{field} {value} contains {found}", found=found)
    if any(seg in ("", ".", "..") for seg in value.split("/")):
        raise ctx.fail("segment", "{field} {value} has an empty, '.' or '..' segment")


def _check_kv_mount(value: str, ctx: Context) -> None:
    top = value.split("/", 1)[0].lower()
    if top in SYSTEM_MOUNTS:
        raise ctx.fail("system", "{field} {value} is (or is under) Vault's own {top} mount", top=top)


def _check_not_blank(value: str, ctx: Context) -> None:
    if not value.strip():
        raise ctx.fail("not_blank", "{field} is empty")


def _check_no_control_chars(value: str, ctx: Context) -> None:
    if _has_control_chars(value):
        raise ctx.fail("no_control_chars", "{field} {value} contains control characters: remove them")


def _check_dns_subdomain(value: str, ctx: Context) -> None:
    if not is_dns_subdomain(value):
        raise ctx.fail("dns_subdomain", "{field} {value} is not a valid DNS subdomain name")


def _check_secret_key(value: str, ctx: Context) -> None:
    if not is_valid_secret_key(value):
        raise ctx.fail("secret_key", "{field} {value} cannot be a Secret key")


def _check_duration(value: float | str, ctx: Context) -> None:
    if isinstance(value, str):
        try:
            parse_duration(value)
        except ValueError:
            if value.strip().startswith("-"):
                raise ctx.fail("negative", "{field} {value} is negative") from None
            raise ctx.fail("duration", "{field} {value} is not a duration") from None


def _qualified_key(kind: str) -> Check:
    def check(key: str, ctx: Context) -> None:
        prefix, slash, name = key.rpartition("/")
        if slash and not is_dns_subdomain(prefix):
            raise ctx.fail("prefix", "{field} key {value}: the prefix before '/' must be a DNS subdomain")
        if not (0 < len(name) <= 63 and _QUALIFIED_NAME.fullmatch(name)):
            raise ctx.fail(
                "name",
                f"{{field}} key {{value}} is not a valid {kind} key: the name part must be 1-63 letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit",
            )
        if slash and (prefix == RESERVED_METADATA_PREFIX or prefix.endswith("." + RESERVED_METADATA_PREFIX)):
            raise ctx.fail(
                "reserved",
                f"{{field}} key {{value}} uses the prefix {RESERVED_METADATA_PREFIX}/, which is reserved for "
                "the operator: use another prefix",
            )

    return check


def _check_annotations_size(value: Mapping[str, str], ctx: Context) -> None:
    total = sum(
        len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
        for k, v in value.items()
    )
    if total > MAX_ANNOTATIONS_BYTES:
        raise ctx.fail(
            "annotations_size",
            "{field} are {n:,} bytes; at most {limit:,} are allowed",
            n=total,
            limit=MAX_ANNOTATIONS_BYTES,
        )


def _check_templates_size(value: Mapping[str, str], ctx: Context) -> None:
    if sum(len(t) for t in value.values()) > MAX_TEMPLATES_LENGTH:
        raise ctx.fail(
            "templates_size",
            "{field} are more than {limit:,} characters long together",
            limit=MAX_TEMPLATES_LENGTH,
        )


CHECKS: Final[Mapping[str, Check]] = {
    "vault_path": _check_vault_path,
    "kv_mount": _check_kv_mount,
    "not_blank": _check_not_blank,
    "no_control_chars": _check_no_control_chars,
    "dns_subdomain": _check_dns_subdomain,
    "secret_key": _check_secret_key,
    "duration": _check_duration,
    "label_key": _qualified_key("label"),
    "annotation_key": _qualified_key("annotation"),
    "annotations_size": _check_annotations_size,
    "templates_size": _check_templates_size,
}
"""The semantic checks, by the names the declarations of :mod:`vaultsync.api` use."""


# ------------------------------------------------------------------------------------- across fields


def _sources(spec: Mapping[str, Any], default_mount: str) -> tuple[SourceSpec, ...]:
    path = spec.get("path")
    raw_sources = spec.get("sources")
    top_mount = spec.get("mount")
    if top_mount is None:
        validate(SPEC.properties["mount"], default_mount, DEFAULT_MOUNT_FIELD, CHECKS)
    mount_default = top_mount if top_mount is not None else default_mount
    kv_default = cast(KvVersion, spec.get("kv") or "v2")

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
        version = _version(spec.get("version"), kv_default, "spec.version", "spec.kv")
        return (SourceSpec(mount=mount_default, path=path, kv=kv_default, version=version),)

    if spec.get("version") is not None:
        raise _fail("spec.version applies to spec.path only: with spec.sources, set version on each source")
    sources: list[SourceSpec] = []
    seen: dict[str, int] = {}
    assert raw_sources is not None
    for i, raw in enumerate(raw_sources):
        where = f"spec.sources[{i}]"
        kv = cast(KvVersion, raw.get("kv") or kv_default)
        source = SourceSpec(
            mount=raw.get("mount") or mount_default,
            path=raw["path"],
            kv=kv,
            version=_version(raw.get("version"), kv, f"{where}.version", f"{where}.kv"),
            where=where,
        )
        if source.label in seen:
            raise _fail(
                f"{where} reads {source.label}, which spec.sources[{seen[source.label]}] already reads: "
                "list each secret once"
            )
        seen[source.label] = i
        sources.append(source)
    return tuple(sources)


def _version(value: int | None, kv: KvVersion, field_name: str, kv_field: str) -> int | None:
    if value is not None and kv != "v2":
        raise _fail(f"{field_name} pins a version, which only KV v2 has: remove it or set {kv_field}: v2")
    return value


def _key_options(
    spec: Mapping[str, Any], templates: Mapping[str, str]
) -> tuple[tuple[str, ...] | None, bool, tuple[str, ...]]:
    """``keys``, ``templatesOnly`` and ``decodeBase64Keys``, which constrain each other."""
    raw_keys = spec.get("keys")
    keys = tuple(dict.fromkeys(raw_keys)) if raw_keys is not None else None
    templates_only = bool(spec.get("templatesOnly"))
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
    decode_keys = tuple(dict.fromkeys(spec.get("decodeBase64Keys") or ()))
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
    return keys, templates_only, decode_keys


def _target(spec: Mapping[str, Any], name: str) -> TargetSpec:
    target = spec.get("target") or {}
    target_name = target.get("name")
    if target_name is None:
        target_name = name
        validate(
            SPEC.properties["target"].properties["name"],
            name,
            "metadata.name (the default of spec.target.name)",
            CHECKS,
        )
    return TargetSpec(
        name=target_name,
        labels=dict(target.get("labels") or {}),
        annotations=dict(target.get("annotations") or {}),
        creation_policy=target.get("creationPolicy") or "Owner",
    )


def _refresh(value: float | str | None, default_refresh: float) -> float:
    if value is None:
        return float(default_refresh)
    # A number is 0 (the field's bounds), the one number a duration may be written as.
    return parse_duration(value) if isinstance(value, str) else 0.0


def _auth(spec: Mapping[str, Any]) -> AuthSpec:
    auth = spec.get("auth") or {}
    return AuthSpec(
        service_account_name=auth.get("serviceAccountName"),
        role=auth.get("role"),
        method=auth.get("method"),
        mount=auth.get("mount"),
        audience=auth.get("audience"),
        vault_namespace=auth.get("vaultNamespace"),
    )


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
    validate(SPEC, spec, "spec", CHECKS)
    sources = _sources(spec, default_mount)
    templates = dict(spec.get("templates") or {})
    keys, templates_only, decode_keys = _key_options(spec, templates)
    rollouts = spec.get("rolloutRestartTargets") or ()
    return VaultSecretSpec(
        sources=sources,
        keys=keys,
        templates=templates,
        templates_only=templates_only,
        secret_type=spec.get("type") or "Opaque",
        decode_base64_keys=decode_keys,
        target=_target(spec, name),
        refresh_interval=_refresh(spec.get("refreshInterval"), default_refresh),
        auth=_auth(spec),
        rollout_restart_targets=tuple(
            dict.fromkeys(RolloutTarget(kind=item["kind"], name=item["name"]) for item in rollouts)
        ),
    )
