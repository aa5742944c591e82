"""value_to_bytes / value_to_text / is_valid_secret_key."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultsync.core.convert import is_valid_secret_key, value_to_bytes, value_to_text

from .strategies import json_values


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello", b"hello"),
        ("", b""),
        ("pässwörd ✓", "pässwörd ✓".encode()),
        ('with "quotes"', b'with "quotes"'),
        (True, b"true"),
        (False, b"false"),
        (42, b"42"),
        (-3, b"-3"),
        (0, b"0"),
        (1.5, b"1.5"),
        (1e20, b"1e+20"),
        (None, b"null"),
        ({"a": 1, "b": [True, None]}, b'{"a":1,"b":[true,null]}'),
        ({"z": 1, "a": 2}, b'{"z":1,"a":2}'),  # Vault's order is kept
        ([1, "x", {"k": "ü"}], '[1,"x",{"k":"ü"}]'.encode()),
        ([], b"[]"),
        ({}, b"{}"),
        ((1, 2), b"[1,2]"),
        (b"\x00\xff", b"\x00\xff"),
    ],
)
def test_value_to_bytes(value: Any, expected: bytes) -> None:
    assert value_to_bytes(value) == expected


def test_value_to_text_matches_bytes() -> None:
    assert value_to_text({"a": [1, 2.5, False]}) == '{"a":[1,2.5,false]}'
    assert value_to_text("x") == "x"


@pytest.mark.parametrize("value", [object(), {1, 2}, {"a": object()}, [b"bytes-in-list"]])
def test_unsupported_types_raise_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        value_to_bytes(value)


def test_lone_surrogate_is_value_error_without_value() -> None:
    with pytest.raises(ValueError, match="Unicode") as info:
        value_to_bytes("s3cr3t-VALUE\ud800")
    assert "s3cr3t" not in str(info.value)


def test_circular_reference_is_value_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        value_to_bytes(loop)


def test_deep_nesting_is_value_error() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested"):
        value_to_bytes(deep)


def test_huge_integer_is_value_error() -> None:
    with pytest.raises(ValueError):
        value_to_bytes(10**5000)


@given(json_values)
def test_value_to_bytes_is_deterministic(value: Any) -> None:
    assert value_to_bytes(value) == value_to_bytes(value)
    assert isinstance(value_to_bytes(value), bytes)


@pytest.mark.parametrize(
    "key",
    ["a", "A-b_c.d", "tls.crt", ".dockerconfigjson", "..a", "a..", "x" * 253, "0", "-", "_"],
)
def test_valid_secret_keys(key: str) -> None:
    assert is_valid_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["", ".", "..", "db password", "a/b", "ä", "x" * 254, "a\n", "tab\t", "key:1", "\u0661"],
)
def test_invalid_secret_keys(key: str) -> None:
    assert not is_valid_secret_key(key)


def test_non_string_key_is_invalid() -> None:
    assert not is_valid_secret_key(5)  # type: ignore[arg-type]


@given(st.text())
def test_secret_key_check_never_raises(key: str) -> None:
    assert is_valid_secret_key(key) in (True, False)
