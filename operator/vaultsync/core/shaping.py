"""Turn what Vault returned into the data of the Secret the spec asks for.

:func:`shape_secret` does, in this order:

1. **merge** the sources; a key given by two sources is a ``KeyConflict`` (never an override);
2. **select** ``spec.keys`` (all keys when unset; none with ``templatesOnly``); a listed key that
   Vault lacks is ``InvalidData``;
3. **convert** each value to bytes with :func:`~vaultsync.core.convert.value_to_bytes`
   (``spec.decodeBase64Keys`` are base64-decoded to raw bytes instead);
4. **render** ``spec.templates``; a templated key replaces a copied key of the same name (templates win);
5. **check** that every key can be a Secret key, that the Secret type's required keys are there and
   well-formed (:func:`validate_secret_type`), and that the Secret fits in 1 MiB.

Errors never contain a value: they name keys, sources, types and sizes only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .convert import is_valid_secret_key, value_to_bytes
from .errors import INVALID_DATA, INVALID_SPEC, KEY_CONFLICT, SyncError
from .spec import SERVICE_ACCOUNT_TOKEN_TYPE, SourceSpec, VaultSecretSpec
from .templates import CompiledTemplates, render_templates

__all__ = [
    "MAX_SECRET_SIZE",
    "TYPE_REQUIREMENTS",
    "SourceData",
    "build_context",
    "shape_secret",
    "validate_secret_type",
]

MAX_SECRET_SIZE = 1024 * 1024
"""Kubernetes refuses a Secret whose keys and values together exceed 1 MiB."""

TYPE_REQUIREMENTS: Mapping[str, str] = {
    "kubernetes.io/tls": "tls.crt and tls.key (PEM: a certificate chain and a private key)",
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson (a JSON object with 'auths')",
    "kubernetes.io/dockercfg": ".dockercfg (a JSON object)",
    "kubernetes.io/basic-auth": "username or password (or both)",
    "kubernetes.io/ssh-auth": "ssh-privatekey",
}
"""The keys each Secret type needs (documentation; :func:`validate_secret_type` enforces them)."""

_MAX_NAMES_SHOWN = 10


@dataclass(frozen=True)
class SourceData:
    """One source as Vault returned it."""

    source: SourceSpec
    data: Mapping[str, Any]
    """The KV data as Vault returned it (values may be non-strings)."""
    version: int | None
    """KV v2 ``metadata.version`` (``None`` for KV v1)."""
    created_time: str | None
    """KV v2 ``metadata.created_time``."""


def _name(key: Any) -> str:
    """A key name for messages (names are not secret; shortened and made printable)."""
    text = repr(key) if isinstance(key, str) else repr(str(key))
    return text if len(text) <= 80 else text[:77] + "...'"


def _names(keys: Sequence[Any]) -> str:
    shown = ", ".join(_name(k) for k in keys[:_MAX_NAMES_SHOWN])
    if len(keys) > _MAX_NAMES_SHOWN:
        shown += f" and {len(keys) - _MAX_NAMES_SHOWN} more"
    return shown


def _labels(sources: Sequence[SourceData]) -> str:
    return ", ".join(s.source.label for s in sources) or "(no source)"


def _merge(sources: Sequence[SourceData]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    conflicts: dict[str, list[str]] = {}
    for src in sources:
        label = src.source.label
        data = src.data
        if not isinstance(data, Mapping):
            raise SyncError(
                INVALID_DATA, f"{label} did not return key/value data; check that it is a KV secret"
            )
        for key, value in data.items():
            if not isinstance(key, str):
                raise SyncError(
                    INVALID_DATA, f"{label} returned a key that is not text ({type(key).__name__})"
                )
            if key in merged:
                conflicts.setdefault(key, [origin[key]]).append(label)
                continue
            merged[key] = value
            origin[key] = label
    if conflicts:
        first_key, first_labels = next(iter(conflicts.items()))
        others = (
            f" (and {len(conflicts) - 1} more key(s): {_names(list(conflicts)[1:])})"
            if len(conflicts) > 1
            else ""
        )
        raise SyncError(
            KEY_CONFLICT,
            f"key {_name(first_key)} is given by both {' and '.join(first_labels)}{others}; "
            "a key may come from one source only: remove or rename it in all but one of them in Vault, "
            "or read these secrets into separate VaultSecrets",
        )
    return merged


def build_context(
    merged: Mapping[str, Any], sources: Sequence[SourceData], *, namespace: str, name: str
) -> dict[str, Any]:
    """The variables templates see.

    Every Vault key by name (a key named ``secret``, ``metadata``, ``namespace``, ``name``, ``range`` or
    ``dict`` is only reachable as ``secret['...']``), ``secret`` (all merged keys, original values),
    ``metadata`` (``version`` and ``created_time`` of the first source, and ``sources``: label ->
    ``{version, created_time}``), ``namespace`` and ``name`` (of the VaultSecret).
    """
    reserved = {"secret", "metadata", "namespace", "name", "range", "dict"}
    first = sources[0] if sources else None
    metadata: dict[str, Any] = {
        "version": first.version if first else None,
        "created_time": first.created_time if first else None,
        "sources": {s.source.label: {"version": s.version, "created_time": s.created_time} for s in sources},
    }
    context: dict[str, Any] = {k: v for k, v in merged.items() if k not in reserved}
    context.update(secret=dict(merged), metadata=metadata, namespace=namespace, name=name)
    return context


def _decode_base64(key: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise SyncError(
            INVALID_DATA,
            f"Vault key {_name(key)} is listed in spec.decodeBase64Keys but its value is not text "
            f"(it is {type(value).__name__}); store base64 text in Vault "
            "or remove the key from decodeBase64Keys",
        )
    compact = "".join(value.split())
    problem = SyncError(
        INVALID_DATA,
        f"Vault key {_name(key)} is listed in spec.decodeBase64Keys but its value is not valid base64; "
        "store it base64-encoded in Vault or remove the key from decodeBase64Keys",
    )
    if not compact.isascii():
        raise problem
    compact += "=" * (-len(compact) % 4)
    if "-" in compact or "_" in compact:
        compact = compact.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise problem from None


def _convert(key: str, value: Any, decode: bool) -> bytes:
    if decode:
        return _decode_base64(key, value)
    try:
        return value_to_bytes(value)
    except (TypeError, ValueError, RecursionError):
        raise SyncError(
            INVALID_DATA,
            f"Vault key {_name(key)} has a value of type {type(value).__name__} that cannot be written as "
            "text (unsupported type, invalid Unicode or too deeply nested); fix the value in Vault",
        ) from None


def shape_secret(
    spec: VaultSecretSpec,
    sources: Sequence[SourceData],
    *,
    templates: CompiledTemplates,
    namespace: str,
    name: str,
) -> dict[str, bytes]:
    """The Secret's data (key -> bytes, sorted by key) for ``spec`` from what Vault returned.

    ``sources`` are in the order of ``spec.sources``; ``templates`` is
    ``compile_templates(spec.templates)``; ``namespace`` and ``name`` are the VaultSecret's.

    Raises ``SyncError`` with ``KeyConflict`` (two sources give one key), ``InvalidData`` (keys
    missing or invalid, bad base64, type requirements unmet, too large), ``TemplateError``, or
    ``InvalidSpec`` (a type the operator refuses to write).
    """
    merged = _merge(sources)

    # Select.
    copied: dict[str, Any]
    if spec.templates_only:
        copied = {}
    elif spec.keys is not None:
        missing = [k for k in spec.keys if k not in merged]
        if missing:
            raise SyncError(
                INVALID_DATA,
                f"spec.keys lists {_names(missing)}, which Vault does not have at {_labels(sources)}; "
                "add the key(s) in Vault or remove them from spec.keys",
            )
        copied = {k: merged[k] for k in spec.keys}
    else:
        copied = dict(merged)

    # Convert.
    decode = set(spec.decode_base64_keys)
    missing_decode = [k for k in spec.decode_base64_keys if k not in merged]
    if missing_decode:
        raise SyncError(
            INVALID_DATA,
            f"spec.decodeBase64Keys lists {_names(missing_decode)}, which Vault does not have at "
            f"{_labels(sources)}; add the key(s) in Vault or remove them from decodeBase64Keys",
        )
    data: dict[str, bytes] = {k: _convert(k, v, k in decode) for k, v in copied.items()}

    # Render; templates win over copied keys of the same name.
    if len(templates):
        context = build_context(merged, sources, namespace=namespace, name=name)
        data.update(render_templates(templates, context))

    # Check keys, type and size.
    invalid = [k for k in data if not is_valid_secret_key(k)]
    if invalid:
        raise SyncError(
            INVALID_DATA,
            f"Vault key(s) {_names(invalid)} cannot be Secret keys "
            "(allowed: 1-253 letters, digits, '-', '_', '.'; not '.' or '..'); "
            "rename them in Vault, or select other keys with spec.keys",
        )
    validate_secret_type(spec.secret_type, data)
    size = sum(len(k.encode("utf-8")) + len(v) for k, v in data.items())
    if size > MAX_SECRET_SIZE:
        raise SyncError(
            INVALID_DATA,
            f"the Secret would be {size:,} bytes; Kubernetes allows at most {MAX_SECRET_SIZE:,}: "
            "select fewer keys with spec.keys or store less in Vault",
        )
    return dict(sorted(data.items()))


# --------------------------------------------------------------------------------------------- Secret types

MAX_PEM_SIZE = MAX_SECRET_SIZE
"""Largest ``tls.crt`` / ``tls.key`` checked (a larger one could not be written anyway)."""
MAX_PEM_BLOCKS = 1000
"""Most PEM blocks in one value (a CA bundle has about 150)."""
_PEM_LABEL = re.compile(rb"[A-Z0-9 ]+")


def _pem_label(line: bytes, marker: bytes) -> bytes | None:
    """The label of a ``-----BEGIN label-----`` (or END) line, else None; linear in the line's length."""
    if not (line.startswith(marker) and line.endswith(b"-----")) or len(line) <= len(marker) + 5:
        return None
    label = line[len(marker) : -5]
    return label if _PEM_LABEL.fullmatch(label) else None


def _pem_blocks(secret_type: str, key: str, data: bytes) -> list[tuple[str, bool]]:
    """(label, body is valid base64) for every PEM block; RFC 1421 headers (``Proc-Type: ...``) allowed.

    One pass over the lines (a backtracking regex over the value was quadratic: 288 KB of BEGIN lines took
    51 s). A BEGIN line inside a block starts the block again; a block without its END line is ignored.
    """
    if len(data) > MAX_PEM_SIZE:
        raise SyncError(INVALID_DATA, f"type {secret_type}: {key!r} is larger than {MAX_PEM_SIZE:,} bytes")
    blocks: list[tuple[str, bool]] = []
    label: bytes | None = None
    body: list[bytes] = []
    for raw in data.split(b"\n"):
        line = raw.strip()
        begin = _pem_label(line, b"-----BEGIN ")
        if begin is not None:
            label, body = begin, []
            continue
        if label is None:
            continue
        if _pem_label(line, b"-----END ") == label:
            blocks.append((label.decode("ascii"), _pem_body_ok(body)))
            if len(blocks) > MAX_PEM_BLOCKS:
                raise SyncError(
                    INVALID_DATA,
                    f"type {secret_type}: {key!r} holds more than {MAX_PEM_BLOCKS:,} PEM blocks",
                )
            label = None
            continue
        body.append(line)
    return blocks


def _pem_body_ok(lines: list[bytes]) -> bool:
    if lines and b":" in lines[0]:
        # Encapsulated headers (e.g. "Proc-Type: 4,ENCRYPTED") end at the first blank line.
        blank = next((i for i, line in enumerate(lines) if not line), len(lines))
        lines = lines[blank + 1 :]
    compact = b"".join(b"".join(lines).split())
    try:
        return bool(compact) and bool(base64.b64decode(compact, validate=True))
    except (binascii.Error, ValueError):
        return False


def _require(secret_type: str, data: Mapping[str, bytes], key: str) -> bytes:
    if key not in data:
        raise SyncError(
            INVALID_DATA,
            f"type {secret_type} needs the key {key!r}, which the Secret would not have; "
            f"add it in Vault (or with spec.templates), or change spec.type",
        )
    return data[key]


def _check_json_object(secret_type: str, key: str, value: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise SyncError(INVALID_DATA, f"type {secret_type}: {key!r} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SyncError(
            INVALID_DATA,
            f"type {secret_type}: {key!r} is not valid JSON "
            f"({exc.msg} at line {exc.lineno} column {exc.colno})",
        ) from None
    except (ValueError, RecursionError):
        raise SyncError(INVALID_DATA, f"type {secret_type}: {key!r} is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise SyncError(INVALID_DATA, f"type {secret_type}: {key!r} must be a JSON object")
    return parsed


def validate_secret_type(secret_type: str, data: Mapping[str, bytes]) -> None:
    """Check that ``data`` has what a Secret of ``secret_type`` needs (see :data:`TYPE_REQUIREMENTS`).

    * ``kubernetes.io/tls``: ``tls.crt`` with at least one PEM ``CERTIFICATE`` block and
      ``tls.key`` with a PEM ``... PRIVATE KEY`` block, each with a valid base64 body;
    * ``kubernetes.io/dockerconfigjson``: ``.dockerconfigjson``, a JSON object with an ``auths`` object;
    * ``kubernetes.io/dockercfg``: ``.dockercfg``, a JSON object;
    * ``kubernetes.io/basic-auth``: ``username`` or ``password``;
    * ``kubernetes.io/ssh-auth``: ``ssh-privatekey``;
    * ``kubernetes.io/service-account-token``: refused with ``InvalidSpec`` (the operator does not
      forge ServiceAccount tokens);
    * any other type: no check.

    Raises ``SyncError(INVALID_DATA, ...)`` naming the type and the key, never a value.
    """
    kind = secret_type
    if secret_type == SERVICE_ACCOUNT_TOKEN_TYPE:
        raise SyncError(
            INVALID_SPEC,
            f"spec.type {SERVICE_ACCOUNT_TOKEN_TYPE} is refused: the operator does not forge ServiceAccount "
            "tokens; use Opaque or another type",
        )
    if kind == "kubernetes.io/tls":
        crt = _require(secret_type, data, "tls.crt")
        key = _require(secret_type, data, "tls.key")
        certs = [ok for label, ok in _pem_blocks(secret_type, "tls.crt", crt) if label == "CERTIFICATE"]
        if not certs:
            raise SyncError(
                INVALID_DATA,
                f"type {secret_type}: 'tls.crt' holds no PEM certificate (-----BEGIN CERTIFICATE-----); "
                "store the PEM certificate chain in Vault (decoded, not base64 of the PEM)",
            )
        if not all(certs):
            raise SyncError(
                INVALID_DATA,
                f"type {secret_type}: a PEM certificate in 'tls.crt' has a body that is not valid base64",
            )
        keys = [ok for label, ok in _pem_blocks(secret_type, "tls.key", key) if label.endswith("PRIVATE KEY")]
        if not keys:
            raise SyncError(
                INVALID_DATA,
                f"type {secret_type}: 'tls.key' holds no PEM private key (-----BEGIN ... PRIVATE KEY-----); "
                "store the PEM private key in Vault",
            )
        if not all(keys):
            raise SyncError(
                INVALID_DATA,
                f"type {secret_type}: the PEM private key in 'tls.key' has a body that is not valid base64",
            )
    elif kind == "kubernetes.io/dockerconfigjson":
        value = _require(secret_type, data, ".dockerconfigjson")
        parsed = _check_json_object(secret_type, ".dockerconfigjson", value)
        if not isinstance(parsed.get("auths"), dict):
            raise SyncError(
                INVALID_DATA,
                f"type {secret_type}: '.dockerconfigjson' needs an \"auths\" object "
                '(e.g. {"auths": {"registry.example.com": {"auth": "..."}}})',
            )
    elif kind == "kubernetes.io/dockercfg":
        _check_json_object(secret_type, ".dockercfg", _require(secret_type, data, ".dockercfg"))
    elif kind == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            raise SyncError(
                INVALID_DATA,
                f"type {secret_type} needs the key 'username' or 'password' (or both), "
                "which the Secret would not have; add them in Vault (or with spec.templates), "
                "or change spec.type",
            )
    elif kind == "kubernetes.io/ssh-auth":
        _require(secret_type, data, "ssh-privatekey")
