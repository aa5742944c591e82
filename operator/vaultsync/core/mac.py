"""Keyed MAC of a Secret's data, for ``status.secretMAC``.

The status must show whether the Secret holds what Vault returned without revealing anything
about the values, so it carries an HMAC-SHA256 keyed with a random key that lives in a Secret in
the operator's namespace, never a plain hash (a plain hash of a short password is easy to reverse).

Canonical encoding (version 1), unambiguous for any keys and values::

    b"vaultsync-secret-mac-v1\\0" || u64(count)
    || for each key in sorted order: u64(len(key_utf8)) || key_utf8 || u64(len(value)) || value

where ``u64`` is an 8-byte big-endian length. The result is ``"hmac-sha256:" + hexdigest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Mapping

__all__ = ["MAC_KEY_BYTES", "MAC_PREFIX", "MIN_MAC_KEY_BYTES", "mac_matches", "new_mac_key", "secret_mac"]

MAC_PREFIX = "hmac-sha256:"
MAC_KEY_BYTES = 32
"""Length of keys made by :func:`new_mac_key`."""
MIN_MAC_KEY_BYTES = 16
"""Shorter keys are refused: they would make the MAC guessable."""

_DOMAIN = b"vaultsync-secret-mac-v1\x00"


def _u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def secret_mac(key: bytes, data: Mapping[str, bytes]) -> str:
    """``"hmac-sha256:<hex>"`` over the canonical encoding of ``data`` (see the module docstring).

    Independent of the mapping's insertion order. Raises :class:`ValueError` if ``key`` is shorter
    than :data:`MIN_MAC_KEY_BYTES` and :class:`TypeError` if a key is not ``str`` or a value not ``bytes``.
    """
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_MAC_KEY_BYTES:
        raise ValueError(f"the MAC key must be at least {MIN_MAC_KEY_BYTES} bytes")
    mac = hmac.new(bytes(key), digestmod=hashlib.sha256)
    mac.update(_DOMAIN)
    mac.update(_u64(len(data)))
    encoded: list[tuple[bytes, bytes]] = []
    for k, v in data.items():
        if not isinstance(k, str):
            raise TypeError("Secret keys must be str")
        if not isinstance(v, bytes | bytearray):
            raise TypeError("Secret values must be bytes")
        encoded.append((k.encode("utf-8", "surrogatepass"), bytes(v)))
    for kb, vb in sorted(encoded):
        mac.update(_u64(len(kb)))
        mac.update(kb)
        mac.update(_u64(len(vb)))
        mac.update(vb)
    return MAC_PREFIX + mac.hexdigest()


def mac_matches(key: bytes, data: Mapping[str, bytes], mac: str) -> bool:
    """True if ``mac`` is :func:`secret_mac` of ``data`` under ``key`` (constant-time comparison).

    Anything that is not a well-formed MAC (wrong type, non-ASCII, another prefix) is ``False``.
    """
    if not isinstance(mac, str) or not mac.isascii():
        return False
    expected = secret_mac(key, data)
    return hmac.compare_digest(expected.encode("ascii"), mac.encode("ascii"))


def new_mac_key() -> bytes:
    """A new random MAC key of :data:`MAC_KEY_BYTES` bytes from :mod:`secrets`."""
    return secrets.token_bytes(MAC_KEY_BYTES)
