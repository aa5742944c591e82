"""Keyed MAC of a Secret's data, for ``status.secretMAC``.

The status must show whether the Secret holds what Vault returned without revealing anything
about the values, so it carries an HMAC-SHA256 keyed with a random key that lives in a Secret in
the operator's namespace, never a plain hash (a plain hash of a short password is easy to reverse).

Canonical encoding (version 1), unambiguous for any keys and values::

    b"vaultsync-secret-mac-v1\\0" || u64(count)
    || for each key in sorted order: u64(len(key_utf8)) || key_utf8 || u64(len(value)) || value

where ``u64`` is an 8-byte big-endian length. The result is ``"hmac-sha256:" + hexdigest``.

Per-object keys: the key Secret holds one *master* key; the MAC of each VaultSecret's data is keyed with
:func:`object_mac_key` (master, namespace, VaultSecret uid), so equal values give unrelated MACs in two
objects and one namespace's status says nothing about another's. Earlier versions keyed every MAC with
the master key itself; :func:`secret_mac` under the master key is that "legacy" MAC, which the engine only
*recognises* (to rewrite an upgraded object's status quietly) and never writes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Mapping

__all__ = [
    "MAC_KEY_BYTES",
    "MAC_PREFIX",
    "MIN_MAC_KEY_BYTES",
    "mac_matches",
    "new_mac_key",
    "object_mac_key",
    "secret_mac",
]

MAC_PREFIX = "hmac-sha256:"
MAC_KEY_BYTES = 32
"""Length of keys made by :func:`new_mac_key`."""
MIN_MAC_KEY_BYTES = 16
"""Shorter keys are refused: they would make the MAC guessable."""

_DOMAIN = b"vaultsync-secret-mac-v1\x00"
_KEY_DOMAIN = b"vaultsync-secret-mac-key-v1\x00"


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


def object_mac_key(master: bytes, namespace: str, uid: str) -> bytes:
    """The MAC key of one VaultSecret: HKDF-SHA256 (RFC 5869) of the master key, with the info string
    ``_KEY_DOMAIN || u64(len) || namespace || u64(len) || uid`` (UTF-8), 32 bytes.

    Why this construction: HKDF is the standard way to derive independent keys from one secret key; its
    output under HMAC-SHA256 is a pseudo-random function of (master, info), so knowing the key (or MACs) of
    one object reveals nothing about the master key or another object's key. The domain string keeps these
    keys apart from any other use of the master key (including the legacy MACs made with it directly), and
    the length prefixes make (namespace, uid) unambiguous (``("a", "bc")`` and ``("ab", "c")`` differ). The
    uid, not only the name, gives a deleted and re-created VaultSecret a fresh key. Written out with
    :mod:`hmac` (one output block: extract and one expand step) because the operator's runtime does not
    depend on ``cryptography``.
    """
    if not isinstance(master, bytes | bytearray) or len(master) < MIN_MAC_KEY_BYTES:
        raise ValueError(f"the MAC key must be at least {MIN_MAC_KEY_BYTES} bytes")
    ns, ident = namespace.encode("utf-8", "surrogatepass"), uid.encode("utf-8", "surrogatepass")
    info = _KEY_DOMAIN + _u64(len(ns)) + ns + _u64(len(ident)) + ident
    prk = hmac.digest(b"\x00" * hashlib.sha256().digest_size, bytes(master), "sha256")  # HKDF-Extract
    return hmac.digest(prk, info + b"\x01", "sha256")  # HKDF-Expand, T(1): 32 bytes


def new_mac_key() -> bytes:
    """A new random MAC key of :data:`MAC_KEY_BYTES` bytes from :mod:`secrets`."""
    return secrets.token_bytes(MAC_KEY_BYTES)
