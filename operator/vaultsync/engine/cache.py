"""The engine's copy of every Secret it manages, kept as compact JSON.

The engine needs the whole object (a replace must carry everything others put on the Secret), but only when
it syncs; kept as decoded dicts, 10,000 Secrets cost ~27 MB, as JSON text ~10 MB. Reads decode a fresh copy.

It also keeps the *last synced* copy of a Secret that was deleted or edited by hand (drift), so that the
engine can write it back while Vault cannot be read. In steady state there is no such copy: `set_aside`
only moves the current copy's bytes aside when drift is seen (no second encoding), and the engine forgets it
once the Secret holds our data again. So a managed Secret costs one copy, two only while it is drifted.
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
        self._synced: dict[Key, bytes] = {}

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

    def discard(self, key: Key) -> None:
        self._items.pop(key, None)

    def set_aside(self, key: Key) -> None:
        """Keeps the current copy as the last synced one, unless one is kept already (the first drift
        after a sync is what departs from the synced data; later events are further edits)."""
        raw = self._items.get(key)
        if raw is not None and key not in self._synced:
            self._synced[key] = raw

    def last_synced(self, key: Key) -> dict[str, Any] | None:
        raw = self._synced.get(key)
        return None if raw is None else _decoded(raw)

    def forget_last_synced(self, key: Key) -> None:
        self._synced.pop(key, None)

    def kept_aside(self) -> int:
        """How many last synced copies are kept (Secrets drifted and not yet repaired)."""
        return len(self._synced)


def _decoded(raw: bytes) -> dict[str, Any]:
    secret: dict[str, Any] = json.loads(raw)
    return secret
