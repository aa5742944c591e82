"""shape_secret / validate_secret_type / build_context."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultsync.core.errors import INVALID_DATA, INVALID_SPEC, KEY_CONFLICT, TEMPLATE_ERROR, SyncError
from vaultsync.core.shaping import (
    MAX_SECRET_SIZE,
    SourceData,
    build_context,
    shape_secret,
    validate_secret_type,
)
from vaultsync.core.spec import VaultSecretSpec, parse_spec
from vaultsync.core.templates import compile_templates

from .strategies import json_values, secret_keys, vault_data

SECRET = "s3cr3t-VALUE"


def make_spec(**fields: Any) -> VaultSecretSpec:
    fields.setdefault("path", "apps/shop/db")
    return parse_spec(fields, name="shop-db", default_mount="secret")


def src(spec: VaultSecretSpec, data: dict[str, Any], index: int = 0, version: int | None = 3) -> SourceData:
    return SourceData(
        source=spec.sources[index],
        data=data,
        version=version,
        created_time="2024-05-01T10:00:00Z" if version else None,
    )


def shape(spec: VaultSecretSpec, *sources: SourceData) -> dict[str, bytes]:
    return shape_secret(
        spec, list(sources), templates=compile_templates(spec.templates), namespace="shop", name="shop-db"
    )


def shape_one(data: dict[str, Any], **fields: Any) -> dict[str, bytes]:
    spec = make_spec(**fields)
    return shape(spec, src(spec, data))


def fails(data: dict[str, Any], reason: str, *fragments: str, **fields: Any) -> SyncError:
    with pytest.raises(SyncError) as info:
        shape_one(data, **fields)
    err = info.value
    assert err.reason == reason, err
    for fragment in fragments:
        assert fragment in err.message, (fragment, err.message)
    assert_no_leak(err)
    return err


def assert_no_leak(err: BaseException, *values: str) -> None:
    for value in (SECRET, "s3cr3t", *values):
        assert value not in str(err)
        assert value not in repr(err)
        if isinstance(err, SyncError):
            assert value not in err.message


# --- copying and conversion


def test_copies_all_keys_converted_and_sorted() -> None:
    out = shape_one(
        {
            "username": "app",
            "password": SECRET,
            "port": 5432,
            "ratio": 1.5,
            "enabled": True,
            "off": False,
            "nothing": None,
            "obj": {"z": 1, "a": [True, None, "ü"]},
            "list": [1, "two"],
        }
    )
    assert out == {
        "enabled": b"true",
        "list": b'[1,"two"]',
        "nothing": b"null",
        "obj": '{"z":1,"a":[true,null,"ü"]}'.encode(),
        "off": b"false",
        "password": SECRET.encode(),
        "port": b"5432",
        "ratio": b"1.5",
        "username": b"app",
    }
    assert list(out) == sorted(out)


def test_empty_vault_secret() -> None:
    assert shape_one({}) == {}


def test_keys_selects() -> None:
    assert shape_one({"a": "1", "b": "2", "c": "3"}, keys=["c", "a"]) == {"a": b"1", "c": b"3"}


def test_keys_missing_in_vault_named() -> None:
    err = fails(
        {"a": "1"}, INVALID_DATA, "spec.keys", "'b'", "'c'", "secret/apps/shop/db", keys=["a", "b", "c"]
    )
    assert "'a'" not in err.message


def test_keys_select_around_invalid_vault_keys() -> None:
    assert shape_one({"db password": SECRET, "password": "x"}, keys=["password"]) == {"password": b"x"}


def test_invalid_vault_key_reported_not_dropped() -> None:
    err = fails(
        {"db password": SECRET, "ok": "x"},
        INVALID_DATA,
        "'db password'",
        "cannot be Secret keys",
        "spec.keys",
    )
    assert "'ok'" not in err.message


@pytest.mark.parametrize("key", ["a/b", "ü", ".", "..", "x" * 254, ""])
def test_invalid_vault_keys(key: str) -> None:
    fails({key: "v"}, INVALID_DATA, "cannot be Secret keys")


def test_many_invalid_keys_are_summarised() -> None:
    err = fails({f"bad key {i}": "v" for i in range(15)}, INVALID_DATA, "and 5 more")
    assert len(err.message) < 600


def test_unconvertible_value_no_leak() -> None:
    fails({"k": SECRET + "\ud800"}, INVALID_DATA, "'k'", "cannot be written as text")
    fails({"k": [SECRET, object()]}, INVALID_DATA, "'k'", "list")
    fails({"k": {1, 2}}, INVALID_DATA, "'k'", "set")


def test_non_mapping_data_and_non_string_keys() -> None:
    spec = make_spec()
    with pytest.raises(SyncError) as info:
        shape(spec, SourceData(spec.sources[0], ["x"], 1, None))  # type: ignore[arg-type]
    assert info.value.reason == INVALID_DATA
    assert "secret/apps/shop/db" in info.value.message
    with pytest.raises(SyncError) as info:
        shape(spec, SourceData(spec.sources[0], {1: "x"}, 1, None))  # type: ignore[dict-item]
    assert info.value.reason == INVALID_DATA
    assert "not text" in info.value.message


# --- fan-in


def fan_in_spec(**fields: Any) -> VaultSecretSpec:
    return parse_spec(
        {"sources": [{"path": "apps/a"}, {"path": "shared/db", "kv": "v1"}], **fields},
        name="shop-db",
        default_mount="secret",
    )


def test_sources_merge() -> None:
    spec = fan_in_spec()
    out = shape(spec, src(spec, {"a": "1"}, 0), src(spec, {"b": "2"}, 1, version=None))
    assert out == {"a": b"1", "b": b"2"}


def test_key_conflict_never_overrides() -> None:
    spec = fan_in_spec()
    with pytest.raises(SyncError) as info:
        shape(spec, src(spec, {"password": SECRET, "x": "1"}, 0), src(spec, {"password": "other"}, 1))
    err = info.value
    assert err.reason == KEY_CONFLICT
    assert err.message.startswith("key 'password' is given by both secret/apps/a and secret/shared/db; ")
    assert "in Vault" in err.message
    assert_no_leak(err, "other")


def test_key_conflict_even_with_same_value_and_lists_all() -> None:
    spec = fan_in_spec()
    with pytest.raises(SyncError) as info:
        shape(spec, src(spec, {"a": "1", "b": "2", "c": "3"}, 0), src(spec, {"a": "1", "b": "2"}, 1))
    assert info.value.reason == KEY_CONFLICT
    assert "key 'a'" in info.value.message
    assert "1 more key(s): 'b'" in info.value.message


def test_key_conflict_even_if_keys_do_not_select_it() -> None:
    spec = fan_in_spec(keys=["a"])
    with pytest.raises(SyncError) as info:
        shape(spec, src(spec, {"a": "1", "dup": "x"}, 0), src(spec, {"dup": "y"}, 1))
    assert info.value.reason == KEY_CONFLICT


def test_keys_missing_names_all_sources() -> None:
    spec = fan_in_spec(keys=["zzz"])
    with pytest.raises(SyncError) as info:
        shape(spec, src(spec, {"a": "1"}, 0), src(spec, {"b": "2"}, 1))
    assert info.value.reason == INVALID_DATA
    assert "secret/apps/a, secret/shared/db" in info.value.message


# --- decodeBase64Keys


def test_decode_base64_keys_to_raw_bytes() -> None:
    raw = bytes(range(256))
    wrapped = base64.encodebytes(raw).decode()  # with newlines
    out = shape_one(
        {"keystore.p12": wrapped, "nopad": "AAE", "urlsafe": "-_8", "plain": "x"},
        decodeBase64Keys=["keystore.p12", "nopad", "urlsafe"],
    )
    assert out == {"keystore.p12": raw, "nopad": b"\x00\x01", "urlsafe": b"\xfb\xff", "plain": b"x"}


def test_decode_base64_invalid_no_leak() -> None:
    fails({"k": SECRET + "!"}, INVALID_DATA, "'k'", "not valid base64", decodeBase64Keys=["k"])
    fails({"k": "é" + SECRET}, INVALID_DATA, "not valid base64", decodeBase64Keys=["k"])
    fails({"k": "A"}, INVALID_DATA, "not valid base64", decodeBase64Keys=["k"])


def test_decode_base64_non_string() -> None:
    fails({"k": 123}, INVALID_DATA, "'k'", "not text", "int", decodeBase64Keys=["k"])
    fails({"k": [SECRET]}, INVALID_DATA, "'k'", "list", decodeBase64Keys=["k"])


def test_decode_base64_key_missing_in_vault() -> None:
    fails({"a": "x"}, INVALID_DATA, "spec.decodeBase64Keys", "'k'", decodeBase64Keys=["k"])


def test_decode_base64_key_not_selected_is_not_decoded() -> None:
    # A spec built without parse_spec's cross-checks: keys win, nothing to decode.
    spec = dataclasses.replace(make_spec(keys=["a"]), decode_base64_keys=("b",))
    assert shape(spec, src(spec, {"a": "x", "b": "!!"})) == {"a": b"x"}


# --- templates


def test_templates_context() -> None:
    spec = make_spec(
        templates={
            "DATABASE_URL": (
                "postgresql://{{ username }}:{{ password | urlquote }}@{{ host }}:5432/{{ dbname }}"
            ),
            "all": "{{ secret['db-name'] }}|{{ secret.port }}|{{ port + 1 }}|{{ metadata.version }}|"
            "{{ metadata.created_time }}|{{ namespace }}|{{ name }}|{{ metadata.sources|tojson }}",
        },
    )
    data = {
        "username": "app",
        "password": "p@ss/w",
        "host": "db",
        "dbname": "shop",
        "db-name": "x",
        "port": 5432,
    }
    out = shape(spec, src(spec, data))
    assert out["DATABASE_URL"] == b"postgresql://app:p%40ss%2Fw@db:5432/shop"
    assert out["all"] == (
        b'x|5432|5433|3|2024-05-01T10:00:00Z|shop|shop-db|{"secret/apps/shop/db":'
        b'{"version":3,"created_time":"2024-05-01T10:00:00Z"}}'
    )
    assert out["username"] == b"app"  # copied keys stay


def test_templates_win_over_copied_keys() -> None:
    assert shape_one({"password": "raw"}, templates={"password": "tpl-{{ password }}"}) == {
        "password": b"tpl-raw"
    }


def test_templates_only() -> None:
    out = shape_one(
        {"u": "a", "p": "b", "bad key": "c"}, templates={"creds": "{{ u }}:{{ p }}"}, templatesOnly=True
    )
    assert out == {"creds": b"a:b"}


def test_templates_see_all_keys_even_when_keys_select() -> None:
    out = shape_one({"a": "1", "b": "2"}, keys=["a"], templates={"c": "{{ b }}"})
    assert out == {"a": b"1", "c": b"2"}


def test_template_sees_original_values_not_decoded() -> None:
    out = shape_one({"k": "aGk="}, decodeBase64Keys=["k"], templates={"t": "{{ k }}/{{ k|b64decode }}"})
    assert out == {"k": b"hi", "t": b"aGk=/hi"}


def test_reserved_names_only_via_secret() -> None:
    out = shape_one(
        {
            "name": "vault-name",
            "namespace": "vault-ns",
            "secret": "s",
            "metadata": "m",
            "range": "r",
            "dict": "d",
        },
        templates={
            "t": "{{ name }} {{ namespace }} {{ secret['name'] }} {{ secret.secret }} {{ metadata.version }} "
            "{{ range(2)|list }} {{ secret['range'] }}"
        },
        templatesOnly=True,
    )
    assert out == {"t": b"shop-db shop vault-name s 3 [0, 1] r"}


def test_metadata_for_several_sources() -> None:
    spec = fan_in_spec(
        templates={"m": "{{ metadata.version }} {{ metadata.sources|tojson }}"}, templatesOnly=True
    )
    out = shape(spec, src(spec, {"a": "1"}, 0, version=9), src(spec, {"b": "2"}, 1, version=None))
    assert out["m"] == (
        b'9 {"secret/apps/a":{"version":9,"created_time":"2024-05-01T10:00:00Z"},'
        b'"secret/shared/db":{"version":null,"created_time":null}}'
    )


def test_build_context_without_sources() -> None:
    context = build_context({"a": 1}, [], namespace="ns", name="n")
    assert context == {
        "a": 1,
        "secret": {"a": 1},
        "metadata": {"version": None, "created_time": None, "sources": {}},
        "namespace": "ns",
        "name": "n",
    }


def test_template_error_no_leak() -> None:
    fails({"password": SECRET}, TEMPLATE_ERROR, "template 'x'", templates={"x": "{{ [1].index(password) }}"})
    fails({"password": SECRET}, TEMPLATE_ERROR, "'nope' is undefined", templates={"x": "{{ nope }}"})
    fails({"password": SECRET}, TEMPLATE_ERROR, "not valid JSON", templates={"x": "{{ password|fromjson }}"})


def test_templates_cannot_change_the_context() -> None:
    data = {"a": "1"}
    spec = make_spec(templates={"x": "{{ secret.update({'a': 2}) }}"})
    with pytest.raises(SyncError):
        shape(spec, src(spec, data))
    assert data == {"a": "1"}


# --- size


def test_size_limit_boundary() -> None:
    ok_value = "x" * (MAX_SECRET_SIZE - 1)
    assert len(shape_one({"k": ok_value})["k"]) == MAX_SECRET_SIZE - 1
    err = fails({"k": ok_value + "y"}, INVALID_DATA, "1,048,577 bytes", "at most 1,048,576")
    assert_no_leak(err, "xxxxxxxx")


def test_size_counts_all_keys_no_leak() -> None:
    data = {f"k{i}": SECRET * 10_000 for i in range(10)}
    fails(data, INVALID_DATA, "the Secret would be", "Kubernetes allows at most 1,048,576")


# --- Secret types

CERT_BODY = base64.encodebytes(b"\x30\x82" + bytes(range(200))).decode()
CERT = f"-----BEGIN CERTIFICATE-----\n{CERT_BODY}-----END CERTIFICATE-----\n"
KEY = f"-----BEGIN PRIVATE KEY-----\n{CERT_BODY}-----END PRIVATE KEY-----\n"
RSA_KEY = f"-----BEGIN RSA PRIVATE KEY-----\n{CERT_BODY}-----END RSA PRIVATE KEY-----\n"
ENCRYPTED_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n"
    f"{CERT_BODY}-----END RSA PRIVATE KEY-----\n"
)


def tls(crt: str, key: str) -> dict[str, bytes]:
    return {"tls.crt": crt.encode(), "tls.key": key.encode()}


@pytest.mark.parametrize("key", [KEY, RSA_KEY, ENCRYPTED_KEY, KEY.replace("\n", "\r\n")])
def test_tls_ok(key: str) -> None:
    validate_secret_type("kubernetes.io/tls", tls(CERT + CERT, key))
    validate_secret_type("kubernetes.io/tls", {**tls(CERT, key), "ca.crt": b"anything"})


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"tls.key": KEY.encode()}, "needs the key 'tls.crt'"),
        ({"tls.crt": CERT.encode()}, "needs the key 'tls.key'"),
        (tls(SECRET, KEY), "'tls.crt' holds no PEM certificate"),
        (tls(base64.b64encode(CERT.encode()).decode(), KEY), "'tls.crt' holds no PEM certificate"),
        (tls(KEY, KEY), "'tls.crt' holds no PEM certificate"),
        (tls(CERT.replace(CERT_BODY, SECRET + "!\n"), KEY), "not valid base64"),
        (tls(CERT.replace(CERT_BODY, ""), KEY), "not valid base64"),
        (tls(CERT, SECRET), "'tls.key' holds no PEM private key"),
        (tls(CERT, CERT), "'tls.key' holds no PEM private key"),
        (tls(CERT, KEY.replace(CERT_BODY, SECRET + "!\n")), "private key in 'tls.key'"),
        (
            tls(CERT, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"),
            "no PEM private key",
        ),
    ],
)
def test_tls_invalid(data: dict[str, bytes], fragment: str) -> None:
    with pytest.raises(SyncError) as info:
        validate_secret_type("kubernetes.io/tls", data)
    assert info.value.reason == INVALID_DATA
    assert "kubernetes.io/tls" in info.value.message
    assert fragment in info.value.message
    assert_no_leak(info.value)


def test_tls_through_shape_secret_names_type() -> None:
    fails({"tls.crt": CERT}, INVALID_DATA, "kubernetes.io/tls", "'tls.key'", type="kubernetes.io/tls")
    out = shape_one({"tls.crt": CERT, "tls.key": KEY}, type="kubernetes.io/tls")
    assert set(out) == {"tls.crt", "tls.key"}


DOCKER = json.dumps({"auths": {"registry.example.com": {"auth": "dXNlcjpwYXNz"}}}).encode()


def test_dockerconfigjson() -> None:
    validate_secret_type("kubernetes.io/dockerconfigjson", {".dockerconfigjson": DOCKER})


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "needs the key '.dockerconfigjson'"),
        (SECRET.encode(), "not valid JSON"),
        (b'{"auths": {"r": {"auth": "' + SECRET.encode() + b'"}', "not valid JSON"),
        (b"\xff" + SECRET.encode(), "not UTF-8"),
        (b"[1]", "must be a JSON object"),
        (b'{"x": 1}', '"auths" object'),
        (b'{"auths": "' + SECRET.encode() + b'"}', '"auths" object'),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_dockerconfigjson_invalid(value: bytes | None, fragment: str) -> None:
    data = {} if value is None else {".dockerconfigjson": value}
    with pytest.raises(SyncError) as info:
        validate_secret_type("kubernetes.io/dockerconfigjson", data)
    assert info.value.reason == INVALID_DATA
    assert "kubernetes.io/dockerconfigjson" in info.value.message
    assert fragment in info.value.message
    assert_no_leak(info.value)


def test_dockercfg() -> None:
    validate_secret_type("kubernetes.io/dockercfg", {".dockercfg": b'{"r": {}}'})
    for data, fragment in (
        ({}, "needs the key '.dockercfg'"),
        ({".dockercfg": SECRET.encode()}, "not valid JSON"),
        ({".dockercfg": b'"x"'}, "JSON object"),
    ):
        with pytest.raises(SyncError) as info:
            validate_secret_type("kubernetes.io/dockercfg", data)
        assert info.value.reason == INVALID_DATA
        assert fragment in info.value.message
        assert_no_leak(info.value)


def test_basic_auth() -> None:
    validate_secret_type("kubernetes.io/basic-auth", {"username": b"u"})
    validate_secret_type("kubernetes.io/basic-auth", {"password": b"p"})
    with pytest.raises(SyncError) as info:
        validate_secret_type("kubernetes.io/basic-auth", {"user": b"u"})
    assert info.value.reason == INVALID_DATA
    assert "'username' or 'password'" in info.value.message
    assert "kubernetes.io/basic-auth" in info.value.message


def test_ssh_auth() -> None:
    validate_secret_type("kubernetes.io/ssh-auth", {"ssh-privatekey": b"k"})
    with pytest.raises(SyncError) as info:
        validate_secret_type("kubernetes.io/ssh-auth", {"key": b"k"})
    assert info.value.reason == INVALID_DATA
    assert "'ssh-privatekey'" in info.value.message


def test_service_account_token_refused() -> None:
    with pytest.raises(SyncError) as info:
        validate_secret_type("kubernetes.io/service-account-token", {"token": b"x"})
    assert info.value.reason == INVALID_SPEC
    assert "forge" in info.value.message


@pytest.mark.parametrize("secret_type", ["Opaque", "example.com/custom", "bootstrap.kubernetes.io/token"])
def test_other_types_unchecked(secret_type: str) -> None:
    validate_secret_type(secret_type, {})


# --- properties


@settings(max_examples=200, deadline=None)
@given(vault_data, st.lists(secret_keys, max_size=3), st.booleans())
def test_arbitrary_vault_data_only_raises_sync_error(
    data: dict[str, Any], keys: list[str], use_keys: bool
) -> None:
    spec = make_spec(keys=keys or None) if use_keys and keys else make_spec()
    try:
        out = shape(spec, src(spec, data))
    except SyncError as err:
        assert err.reason in (INVALID_DATA, KEY_CONFLICT)
        return
    assert all(isinstance(v, bytes) for v in out.values())
    assert set(out) <= set(data)


_template_parts = st.sampled_from(
    [
        "{{ ",
        " }}",
        "secret",
        "metadata",
        "name",
        "|tojson",
        "|b64encode",
        "|urlquote",
        "|fromjson",
        "x",
        "[",
        "]",
        "'a'",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(vault_data, min_size=1, max_size=2),
    st.dictionaries(
        secret_keys, st.lists(_template_parts | st.text(max_size=4), max_size=8).map("".join), max_size=2
    ),
    st.booleans(),
)
def test_arbitrary_sources_and_templates_only_raise_sync_error(
    datas: list[dict[str, Any]], templates: dict[str, str], templates_only: bool
) -> None:
    sources = [{"path": f"p{i}"} for i in range(len(datas))]
    try:
        spec = parse_spec(
            {"sources": sources, "templates": templates, "templatesOnly": templates_only and bool(templates)},
            name="n",
            default_mount="secret",
        )
        compiled = compile_templates(spec.templates)
        out = shape_secret(
            spec,
            [SourceData(s, d, 1, None) for s, d in zip(spec.sources, datas, strict=True)],
            templates=compiled,
            namespace="ns",
            name="n",
        )
    except SyncError:
        return
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in out.items())


@given(json_values)
def test_single_value_conversion_is_deterministic(value: Any) -> None:
    try:
        first = shape_one({"k": value})
    except SyncError as err:
        assert err.reason == INVALID_DATA
        return
    assert first == shape_one({"k": value})
