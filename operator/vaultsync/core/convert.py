"""How Vault values become Secret bytes, and which names can be Secret keys."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_SECRET_KEY_LENGTH", "is_valid_secret_key", "value_to_bytes", "value_to_text"]

MAX_SECRET_KEY_LENGTH = 253
"""Kubernetes limits a Secret key to 253 characters."""

_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def value_to_text(value: Any) -> str:
    """The text form of a Vault value; :func:`value_to_bytes` is its UTF-8 encoding.

    See :func:`value_to_bytes` for the rules. ``bytes`` are not accepted here.
    """
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float | dict | list | tuple):
        # json.dumps(True) == "true" (bool is checked before int by json itself).
        try:
            return json.dumps(value, separators=(",", ":"), sort_keys=False, ensure_ascii=False)
        except RecursionError:
            raise ValueError("the value is nested too deeply to be written as JSON") from None
        except (TypeError, ValueError) as exc:
            # json's messages name types and limits, never values; keep only the type for certainty.
            raise type(exc)(
                f"the value cannot be written as JSON ({type(exc).__name__}: it holds a type JSON "
                "cannot represent, a circular reference or an integer too long)"
            ) from None
    raise TypeError(f"a value of type {type(value).__name__} cannot be converted to text")


def value_to_bytes(value: Any) -> bytes:
    """Convert one Vault value to the bytes stored in the Secret.

    The rules, predictable for every JSON type Vault can return:

    * ``str``: its UTF-8 encoding, unchanged (no quotes);
    * ``bool``: ``b"true"`` / ``b"false"``;
    * ``int`` / ``float``: as JSON writes them: ``42``, ``1.5``, ``-3``, ``1e+20``;
    * ``None``: ``b"null"``;
    * ``dict`` / ``list``: compact JSON, keys in the order Vault gave them, non-ASCII text kept as is:
      ``json.dumps(v, separators=(",", ":"), sort_keys=False, ensure_ascii=False)``,
      e.g. ``{"a":1,"b":[true,null]}``;
    * ``bytes``: returned unchanged.

    Floats that JSON cannot represent (NaN, infinities; Vault never returns them) are written as
    Python's ``json`` module writes them: ``NaN``, ``Infinity``, ``-Infinity``.

    Raises :class:`TypeError` for other types (including inside dicts and lists) and
    :class:`ValueError` for text that is not valid Unicode (lone surrogates) or integers too long
    to write. Exception messages never contain the value.
    """
    if isinstance(value, bytes):
        return value
    text = value_to_text(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the value is not valid Unicode text (it contains a lone surrogate)") from None


def is_valid_secret_key(key: str) -> bool:
    """True if ``key`` can be a Kubernetes Secret key.

    Kubernetes allows 1 to 253 characters from ``[-._a-zA-Z0-9]``, and not ``.`` or ``..``.
    """
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_SECRET_KEY_LENGTH
        and key not in (".", "..")
        and _SECRET_KEY.fullmatch(key) is not None
    )
