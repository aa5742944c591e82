"""Shared hypothesis strategies."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

json_scalars: st.SearchStrategy[Any] = (
    st.text(max_size=30)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

vault_data: st.SearchStrategy[dict[str, Any]] = st.dictionaries(st.text(max_size=12), json_values, max_size=6)

secret_keys: st.SearchStrategy[str] = st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True).filter(
    lambda k: k not in (".", "..")
)

# Vault path-ish text: ordinary characters, the ones an attacker reaches for (%, ., /, ?, #, \, control
# characters), unicode, and a few whole hostile fragments.
_path_atoms = st.sampled_from(
    [
        *("a", "b", "Z", "0", "-", "_", "~", "/", ".", "..", "%", "%2e", "%2E%2e", "%2f", "?", "#", "\\"),
        *(";", "+", " ", "&", "=", "@", ":"),
        *("\x00", "\n", "\r", "\x7f", "\x85", "ä", "€", "\u2028", "\uff0e"),
        *("sys", "SYS", "auth", "Auth", "identity", "cubbyhole", "token", "lookup-self", "data", "secret"),
    ]
)
_segment = st.lists(
    st.sampled_from([*"aZ09-_~.+;:@&=! ", "ä", "€", "\uff0e", "\u2028", "sys", "auth", "data"]),
    min_size=1,
    max_size=6,
).map("".join)
_plausible_path = st.lists(_segment, min_size=1, max_size=4).map("/".join)
vault_path_text: st.SearchStrategy[str] = st.lists(_path_atoms, max_size=10).map("".join) | _plausible_path
"""Paths that a parser must refuse (most of the first kind) or may accept (most of the second)."""

_source = st.fixed_dictionaries(
    {"path": vault_path_text},
    optional={
        "mount": vault_path_text,
        "kv": st.sampled_from(["v1", "v2"]),
        "version": st.integers(min_value=1, max_value=10**6),
    },
)
vaultsecret_specs: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries(
        {"path": vault_path_text},
        optional={
            "mount": vault_path_text,
            "kv": st.sampled_from(["v1", "v2"]),
            "version": st.integers(min_value=1, max_value=10**6),
        },
    ),
    st.fixed_dictionaries(
        {"sources": st.lists(_source, min_size=1, max_size=3)},
        optional={"mount": vault_path_text, "kv": st.sampled_from(["v1", "v2"])},
    ),
)
"""The fields of a VaultSecret's spec that decide which Vault requests a sync makes."""
