"""secret_mac / mac_matches / new_mac_key."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultsync.core.mac import MAC_PREFIX, mac_matches, new_mac_key, object_mac_key, secret_mac

KEY = b"k" * 32
data_strategy = st.dictionaries(st.text(max_size=10), st.binary(max_size=20), max_size=6)


def test_format() -> None:
    mac = secret_mac(KEY, {"a": b"1"})
    assert mac.startswith(MAC_PREFIX)
    digest = mac.removeprefix(MAC_PREFIX)
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_not_a_plain_hash_of_the_value() -> None:
    mac = secret_mac(KEY, {"password": b"hunter2"})
    assert hashlib.sha256(b"hunter2").hexdigest() not in mac
    assert secret_mac(b"x" * 32, {"password": b"hunter2"}) != mac


def test_empty_data() -> None:
    assert secret_mac(KEY, {}) == secret_mac(KEY, {})
    assert secret_mac(KEY, {}) != secret_mac(KEY, {"": b""})


def test_unambiguous_encoding() -> None:
    # Moving bytes between key and value, or between entries, changes the MAC.
    assert secret_mac(KEY, {"ab": b"c"}) != secret_mac(KEY, {"a": b"bc"})
    assert secret_mac(KEY, {"a": b"b", "c": b"d"}) != secret_mac(KEY, {"a": b"bc", "": b"d"})


def test_matches() -> None:
    data = {"a": b"1", "b": b"2"}
    mac = secret_mac(KEY, data)
    assert mac_matches(KEY, data, mac)
    assert mac_matches(KEY, {"b": b"2", "a": b"1"}, mac)
    assert not mac_matches(KEY, {"a": b"1"}, mac)
    assert not mac_matches(b"z" * 32, data, mac)
    assert not mac_matches(KEY, data, mac.upper())
    assert not mac_matches(KEY, data, "")
    assert not mac_matches(KEY, data, "hmac-sha256:ünïcode")
    assert not mac_matches(KEY, data, None)  # type: ignore[arg-type]


def test_short_key_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        secret_mac(b"short", {"a": b"1"})
    with pytest.raises(ValueError):
        secret_mac("not-bytes-not-bytes", {"a": b"1"})  # type: ignore[arg-type]


def test_types_checked() -> None:
    with pytest.raises(TypeError):
        secret_mac(KEY, {"a": "text"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        secret_mac(KEY, {1: b"x"})  # type: ignore[dict-item]


def test_bytearray_key_and_values() -> None:
    assert secret_mac(bytearray(KEY), {"a": bytearray(b"1")}) == secret_mac(KEY, {"a": b"1"})  # type: ignore[arg-type, dict-item]


def test_new_mac_key() -> None:
    a, b = new_mac_key(), new_mac_key()
    assert len(a) == 32 and isinstance(a, bytes)
    assert a != b


@given(data_strategy)
def test_independent_of_insertion_order(data: dict[str, bytes]) -> None:
    reordered = dict(reversed(list(data.items())))
    assert secret_mac(KEY, data) == secret_mac(KEY, reordered)


@given(data_strategy, st.data())
def test_changes_when_a_value_changes(data: dict[str, bytes], draw: st.DataObject) -> None:
    if not data:
        return
    key = draw.draw(st.sampled_from(sorted(data)))
    new_value = draw.draw(st.binary(max_size=20).filter(lambda v: v != data[key]))
    changed = {**data, key: new_value}
    assert secret_mac(KEY, data) != secret_mac(KEY, changed)


@given(data_strategy, st.data())
def test_changes_when_a_key_changes(data: dict[str, bytes], draw: st.DataObject) -> None:
    if not data:
        return
    old = draw.draw(st.sampled_from(sorted(data)))
    new = draw.draw(st.text(max_size=10).filter(lambda k: k not in data))
    renamed = {(new if k == old else k): v for k, v in data.items()}
    assert secret_mac(KEY, data) != secret_mac(KEY, renamed)


@given(data_strategy, st.text(max_size=10), st.binary(max_size=5))
def test_changes_when_a_key_is_added(data: dict[str, bytes], key: str, value: bytes) -> None:
    if key in data:
        return
    assert secret_mac(KEY, data) != secret_mac(KEY, {**data, key: value})


# Per-object keys (issue 10, finding 8) ----------------------------------------------------------------------
def test_object_key_is_rfc5869_hkdf_sha256() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = (
        b"vaultsync-secret-mac-key-v1\x00"
        + (4).to_bytes(8, "big")
        + b"shop"
        + (3).to_bytes(8, "big")
        + b"u-1"
    )
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(KEY)
    assert object_mac_key(KEY, "shop", "u-1") == expected


def test_equal_values_give_unrelated_macs_in_other_objects() -> None:
    data = {"password": b"hunter2"}
    macs = {
        secret_mac(object_mac_key(KEY, namespace, uid), data)
        for namespace, uid in [("shop", "u-1"), ("bank", "u-1"), ("shop", "u-2"), ("sho", "pu-1")]
    }
    assert len(macs) == 4
    assert secret_mac(KEY, data) not in macs  # never the master key's (legacy) MAC either
    assert object_mac_key(KEY, "ab", "c") != object_mac_key(KEY, "a", "bc")


def test_object_key_refuses_a_short_master_key() -> None:
    with pytest.raises(ValueError, match="at least"):
        object_mac_key(b"short", "shop", "u-1")
