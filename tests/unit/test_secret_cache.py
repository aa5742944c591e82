"""The engine's Secret cache keeps compact JSON and hands out independent copies."""

from __future__ import annotations

from vaultsync.engine.cache import SecretCache

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db", "namespace": "ns", "labels": {"app.kubernetes.io/managed-by": "vaultsync"}},
    "type": "Opaque",
    "data": {"password": "c2VjcmV0"},
}


def test_get_returns_what_was_stored_as_a_new_copy_each_time() -> None:
    cache = SecretCache()
    cache[("ns", "db")] = SECRET
    first = cache.get(("ns", "db"))
    assert first == SECRET
    assert first is not SECRET
    assert first is not None
    first["data"]["password"] = "changed"
    assert cache.get(("ns", "db")) == SECRET
    assert ("ns", "db") in cache and len(cache) == 1


def test_missing_keys_and_pop() -> None:
    cache = SecretCache()
    assert cache.get(("ns", "db")) is None
    assert cache.pop(("ns", "db"), {}) == {}
    assert cache.pop(("ns", "db")) is None
    cache[("ns", "db")] = SECRET
    assert cache.pop(("ns", "db"), {}) == SECRET
    assert ("ns", "db") not in cache


def test_later_writes_replace_earlier_ones() -> None:
    cache = SecretCache()
    cache[("ns", "db")] = SECRET
    cache[("ns", "db")] = {**SECRET, "data": {}}
    assert cache.get(("ns", "db")) == {**SECRET, "data": {}}


def test_a_copy_set_aside_survives_later_events_until_forgotten() -> None:
    cache = SecretCache()
    key = ("ns", "db")
    cache.set_aside(key)  # nothing cached: nothing kept
    assert cache.last_synced(key) is None
    cache[key] = SECRET
    cache.set_aside(key)
    cache[key] = {**SECRET, "data": {"password": "ZWRpdGVk"}}  # edited by hand
    cache.set_aside(key)  # a further edit keeps the first (synced) copy
    cache.discard(key)  # then deleted
    assert cache.get(key) is None
    assert cache.last_synced(key) == SECRET
    assert cache.kept_aside() == 1
    cache.forget_last_synced(key)
    assert cache.last_synced(key) is None and cache.kept_aside() == 0
