"""Errors raised by the pure core, each with a stable condition reason.

A :class:`SyncError` carries three things:

* ``reason``: a stable, CamelCase condition reason written to ``status.conditions[].reason``
  (one of the constants below);
* ``message``: a sentence for humans that says what is wrong and what to do about it. It is
  shown in the status, in Events and in logs, so it **never** contains a secret value;
* ``retryable``: whether retrying the same operation later may succeed without anyone
  changing the VaultSecret or Vault (e.g. Vault was unreachable).

Reasons:

``VaultUnavailable``
    Vault could not be reached, is sealed, or answered with a server error.
``AuthFailed``
    The login to Vault failed (bad role, bad JWT, wrong auth mount, ...).
``PermissionDenied``
    Vault denied reading the path with the identity used.
``NotFound``
    The path (or the pinned version) does not exist in Vault.
``TemplateError``
    A ``spec.templates`` entry does not compile or fails to render.
``KeyConflict``
    Two ``spec.sources`` give the same key (never silently overridden).
``TargetConflict``
    A Secret with the target name exists and was not created by this VaultSecret.
``InvalidSpec``
    The VaultSecret's spec is wrong (the message names the field and says what to do).
``InvalidData``
    What Vault returned cannot become the Secret the spec asks for: a key that is not a valid
    Secret key, a key listed in ``spec.keys`` that Vault lacks, the Secret type's required keys
    missing or malformed, bad base64 in a ``spec.decodeBase64Keys`` value, or a Secret too large.
``Synced``
    Not an error: the reason of ``Ready=True``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AUTH_FAILED",
    "INVALID_DATA",
    "INVALID_SPEC",
    "KEY_CONFLICT",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "SYNCED",
    "TARGET_CONFLICT",
    "TEMPLATE_ERROR",
    "VAULT_UNAVAILABLE",
    "SyncError",
]

VAULT_UNAVAILABLE = "VaultUnavailable"
"""Vault could not be reached, is sealed, or answered with a server error."""
AUTH_FAILED = "AuthFailed"
"""The login to Vault failed."""
PERMISSION_DENIED = "PermissionDenied"
"""Vault denied the read with the identity used."""
NOT_FOUND = "NotFound"
"""The path or pinned version does not exist in Vault."""
TEMPLATE_ERROR = "TemplateError"
"""A template does not compile or fails to render."""
KEY_CONFLICT = "KeyConflict"
"""Two sources give the same key."""
TARGET_CONFLICT = "TargetConflict"
"""The target Secret exists and was not created by this VaultSecret."""
INVALID_SPEC = "InvalidSpec"
"""The VaultSecret's spec is wrong."""
INVALID_DATA = "InvalidData"
"""What Vault returned cannot become the Secret the spec asks for."""
SYNCED = "Synced"
"""The reason of Ready=True."""


class SyncError(Exception):
    """A sync failure with a stable condition reason and a message safe to show (never a secret value).

    ``str(error)`` is the message; ``repr(error)`` shows reason, message and retryable.
    """

    reason: str
    message: str
    retryable: bool

    def __init__(self, reason: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"SyncError(reason={self.reason!r}, message={self.message!r}, retryable={self.retryable!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only ``retryable`` would otherwise be lost when pickling (e.g. across processes).
        return (_rebuild, (self.reason, self.message, self.retryable))


def _rebuild(reason: str, message: str, retryable: bool) -> SyncError:
    return SyncError(reason, message, retryable=retryable)
