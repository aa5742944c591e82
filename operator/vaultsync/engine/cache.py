"""The engine's copy of every Secret it manages, kept as compact JSON.

The engine needs the whole object (a replace must carry everything others put on the Secret), but only when
it syncs; kept as decoded dicts, 10,000 Secrets cost ~27 MB, as JSON text ~10 MB. Reads decode a fresh copy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

Key = tuple[str, str]


class SecretCache:
    """A mapping of (namespace, name) to a Secret; ``get``/``pop`` return a new dict each time."""

    def __init__(self) -> None:
        self._items: dict[Key, bytes] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __setitem__(self, key: Key, secret: Mapping[str, Any]) -> None:
        self._items[key] = json.dumps(secret, separators=(",", ":")).encode()

    def get(self, key: Key) -> dict[str, Any] | None:
        raw = self._items.get(key)
        return None if raw is None else _decoded(raw)

    def pop(self, key: Key, default: Any = None) -> Any:
        raw = self._items.pop(key, None)
        return default if raw is None else _decoded(raw)


def _decoded(raw: bytes) -> dict[str, Any]:
    secret: dict[str, Any] = json.loads(raw)
    return secret
