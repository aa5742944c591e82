"""parse_spec: every field, every error path."""

from __future__ import annotations

from typing import Any

import pytest

from vaultsync.core.errors import INVALID_SPEC, SyncError
from vaultsync.core.spec import (
    AuthSpec,
    RolloutTarget,
    SourceSpec,
    TargetSpec,
    VaultSecretSpec,
    is_dns_subdomain,
    parse_spec,
)


def parse(spec: Any, **kwargs: Any) -> VaultSecretSpec:
    kwargs.setdefault("name", "shop-db")
    kwargs.setdefault("default_mount", "secret")
    return parse_spec(spec, **kwargs)


def invalid(spec: Any, *fragments: str, **kwargs: Any) -> SyncError:
    with pytest.raises(SyncError) as info:
        parse(spec, **kwargs)
    err = info.value
    assert err.reason == INVALID_SPEC
    assert not err.retryable
    for fragment in fragments:
        assert fragment in err.message, (fragment, err.message)
    return err


# --- defaults


def test_minimal_path_form_defaults() -> None:
    spec = parse({"path": "apps/shop/db"})
    assert spec == VaultSecretSpec(
        sources=(SourceSpec(mount="secret", path="apps/shop/db", kv="v2", version=None),),
        keys=None,
        templates={},
        templates_only=False,
        secret_type="Opaque",
        decode_base64_keys=(),
        target=TargetSpec(name="shop-db", labels={}, annotations={}, creation_policy="Owner"),
        refresh_interval=3600.0,
        auth=AuthSpec(None, None, None, None, None, None),
        rollout_restart_targets=(),
    )
    assert spec.sources[0].label == "secret/apps/shop/db"


def test_spec_is_hashable_and_frozen() -> None:
    spec = parse({"path": "a", "templates": {"x": "y"}, "target": {"labels": {"a": "b"}}})
    assert hash(spec) == hash(parse({"path": "a", "templates": {"x": "y"}, "target": {"labels": {"a": "b"}}}))
    with pytest.raises(AttributeError):
        spec.keys = ()  # type: ignore[misc]


def test_default_mount_and_refresh_from_operator() -> None:
    spec = parse({"path": "a"}, default_mount="kv/team", default_refresh=60.0)
    assert spec.sources[0].mount == "kv/team"
    assert spec.refresh_interval == 60.0


def test_bad_operator_default_mount() -> None:
    invalid({"path": "a"}, "default mount", default_mount="/kv/")


def test_nulls_count_as_unset() -> None:
    spec = parse(
        {
            "path": "a",
            "mount": None,
            "kv": None,
            "version": None,
            "keys": None,
            "templates": None,
            "templatesOnly": None,
            "type": None,
            "decodeBase64Keys": None,
            "target": None,
            "refreshInterval": None,
            "auth": None,
            "rolloutRestartTargets": None,
        }
    )
    assert spec == parse({"path": "a"})


def test_unknown_fields_ignored() -> None:
    assert parse({"path": "a", "somethingNew": {"x": 1}}) == parse({"path": "a"})


def test_spec_must_be_object() -> None:
    invalid(["path"], "spec must be an object")


# --- sources


def test_full_path_form() -> None:
    spec = parse({"path": "apps/db", "mount": "kv", "kv": "v2", "version": 3})
    assert spec.sources == (SourceSpec(mount="kv", path="apps/db", kv="v2", version=3),)
    assert spec.sources[0].label == "kv/apps/db"


def test_kv_v1() -> None:
    assert parse({"path": "a", "kv": "v1"}).sources[0].kv == "v1"


def test_sources_form_with_defaults_from_top_level() -> None:
    spec = parse(
        {
            "mount": "kv",
            "kv": "v1",
            "sources": [
                {"path": "apps/a"},
                {"path": "shared/db", "mount": "other", "kv": "v2", "version": 7},
            ],
        }
    )
    assert spec.sources == (
        SourceSpec(mount="kv", path="apps/a", kv="v1", version=None),
        SourceSpec(mount="other", path="shared/db", kv="v2", version=7),
    )


def test_path_and_sources_both() -> None:
    invalid({"path": "a", "sources": [{"path": "b"}]}, "spec.path", "spec.sources", "both")


def test_neither_path_nor_sources() -> None:
    invalid({}, "spec.path is missing", "spec.sources")


def test_sources_empty() -> None:
    invalid({"sources": []}, "spec.sources is empty")


def test_sources_not_a_list() -> None:
    invalid({"sources": "apps/a"}, "spec.sources must be a list")
    invalid({"sources": {"path": "a"}}, "spec.sources must be a list")


def test_source_not_an_object() -> None:
    invalid({"sources": ["apps/a"]}, "spec.sources[0] must be an object")


def test_source_path_missing() -> None:
    invalid({"sources": [{"path": "a"}, {"mount": "kv"}]}, "spec.sources[1].path is missing")


def test_top_level_version_with_sources() -> None:
    invalid({"version": 2, "sources": [{"path": "a"}]}, "spec.version", "each source")


def test_duplicate_sources() -> None:
    invalid(
        {"sources": [{"path": "a"}, {"path": "b"}, {"path": "a", "version": 2}]},
        "spec.sources[2]",
        "secret/a",
        "spec.sources[0]",
    )


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("", "spec.path is empty"),
        ("/apps/db", "must not start or end with '/'"),
        ("apps/db/", "must not start or end with '/'"),
        ("apps//db", "empty, '.' or '..' segment"),
        ("apps/../other", "empty, '.' or '..' segment"),
        ("./apps", "empty, '.' or '..' segment"),
        ("apps/db?version=1", "contains '?'"),
        ("apps/db#x", "contains '#'"),
        ("apps/\ndb", "control characters"),
        (5, "spec.path must be a string"),
        (["a"], "spec.path must be a string"),
    ],
)
def test_bad_path(path: Any, fragment: str) -> None:
    invalid({"path": path}, fragment)


def test_too_many_sources() -> None:
    assert len(parse({"sources": [{"path": f"p{i}"} for i in range(16)]}).sources) == 16
    invalid({"sources": [{"path": f"p{i}"} for i in range(17)]}, "spec.sources has 17 entries", "at most 16")


def test_length_limits() -> None:
    assert parse({"path": "a" * 1024, "mount": "m" * 512}).sources[0].path == "a" * 1024
    invalid({"path": "a" * 1025}, "spec.path is 1025 characters long")
    invalid({"path": "a", "mount": "m" * 513}, "spec.mount is 513 characters long")


def test_bad_source_path_names_the_source() -> None:
    invalid({"sources": [{"path": "a"}, {"path": "/b"}]}, "spec.sources[1].path")


@pytest.mark.parametrize("mount", ["/secret", "secret/", "", "a//b", 3])
def test_bad_mount(mount: Any) -> None:
    invalid({"path": "a", "mount": mount}, "spec.mount")


def test_nested_mount_ok() -> None:
    assert parse({"path": "a", "mount": "team/kv"}).sources[0].label == "team/kv/a"


def test_bad_source_mount() -> None:
    invalid({"sources": [{"path": "a", "mount": "/kv"}]}, "spec.sources[0].mount")


@pytest.mark.parametrize("kv", ["v3", "2", 2, "V2", True])
def test_bad_kv(kv: Any) -> None:
    invalid({"path": "a", "kv": kv}, "spec.kv", "v1 or v2")


def test_bad_source_kv() -> None:
    invalid({"sources": [{"path": "a", "kv": "x"}]}, "spec.sources[0].kv", "v1 or v2")


@pytest.mark.parametrize(
    ("version", "fragment"),
    [
        (0, "start at 1"),
        (-1, "start at 1"),
        ("3", "must be an integer"),
        (1.5, "must be an integer"),
        (True, "integer"),
    ],
)
def test_bad_version(version: Any, fragment: str) -> None:
    invalid({"path": "a", "version": version}, "spec.version", fragment)


def test_version_needs_kv_v2() -> None:
    invalid({"path": "a", "kv": "v1", "version": 2}, "spec.version", "only KV v2", "spec.kv: v2")
    invalid(
        {"sources": [{"path": "a", "kv": "v1", "version": 2}]},
        "spec.sources[0].version",
        "spec.sources[0].kv: v2",
    )


# --- keys, templates, type


def test_keys() -> None:
    assert parse({"path": "a", "keys": ["username", "password", "username"]}).keys == ("username", "password")


def test_keys_not_a_list() -> None:
    invalid({"path": "a", "keys": "password"}, "spec.keys must be a list")


@pytest.mark.parametrize("key", ["db password", ".", "..", "", "a/b", "x" * 254])
def test_bad_key_names(key: str) -> None:
    invalid({"path": "a", "keys": ["ok", key]}, "spec.keys[1]", "cannot be a Secret key")


def test_key_not_a_string() -> None:
    invalid({"path": "a", "keys": [1]}, "spec.keys[0] must be a string")


def test_empty_keys_without_templates() -> None:
    invalid({"path": "a", "keys": []}, "spec.keys is empty")


def test_empty_keys_are_refused_with_templates_too() -> None:
    """The CRD's minItems: 1 says so at apply time; the parser agrees (templatesOnly: true says "no Vault
    key" explicitly)."""
    invalid({"path": "a", "keys": [], "templates": {"url": "x"}}, "spec.keys is empty", "remove spec.keys")


def test_empty_decode_base64_keys_are_refused() -> None:
    invalid({"path": "a", "decodeBase64Keys": []}, "spec.decodeBase64Keys is empty")


def test_templates() -> None:
    spec = parse({"path": "a", "templates": {"DATABASE_URL": "postgres://{{ u }}", "b.c": ""}})
    assert spec.templates == {"DATABASE_URL": "postgres://{{ u }}", "b.c": ""}


def test_templates_not_an_object() -> None:
    invalid({"path": "a", "templates": ["x"]}, "spec.templates must be an object")


@pytest.mark.parametrize("key", ["bad key", "..", "ä"])
def test_bad_template_key(key: str) -> None:
    invalid({"path": "a", "templates": {key: "x"}}, "spec.templates key", "cannot be a Secret key")


def test_template_not_a_string() -> None:
    invalid({"path": "a", "templates": {"k": 5}}, "spec.templates.k must be a string")


def test_templates_only() -> None:
    spec = parse({"path": "a", "templates": {"k": "v"}, "templatesOnly": True})
    assert spec.templates_only is True


def test_templates_only_needs_templates() -> None:
    invalid({"path": "a", "templatesOnly": True}, "spec.templatesOnly", "spec.templates is empty")


def test_templates_only_not_bool() -> None:
    invalid({"path": "a", "templatesOnly": "yes"}, "spec.templatesOnly", "true or false")


def test_templates_only_with_keys() -> None:
    invalid(
        {"path": "a", "templates": {"k": "v"}, "templatesOnly": True, "keys": ["x"]},
        "spec.keys",
        "templatesOnly",
    )


@pytest.mark.parametrize(
    "secret_type",
    [
        "Opaque",
        "kubernetes.io/tls",
        "kubernetes.io/dockerconfigjson",
        "kubernetes.io/basic-auth",
        "example.com/x",
    ],
)
def test_type(secret_type: str) -> None:
    assert parse({"path": "a", "type": secret_type}).secret_type == secret_type


@pytest.mark.parametrize(
    ("secret_type", "fragment"), [("", "non-empty"), (5, "non-empty"), ("x" * 300, "not a valid")]
)
def test_bad_type(secret_type: Any, fragment: str) -> None:
    invalid({"path": "a", "type": secret_type}, "spec.type", fragment)


def test_service_account_token_type_refused() -> None:
    invalid({"path": "a", "type": "kubernetes.io/service-account-token"}, "spec.type", "forge")


def test_decode_base64_keys() -> None:
    spec = parse(
        {"path": "a", "decodeBase64Keys": ["keystore.p12", "keystore.p12"], "keys": ["keystore.p12", "x"]}
    )
    assert spec.decode_base64_keys == ("keystore.p12",)


def test_decode_base64_keys_invalid_name() -> None:
    invalid({"path": "a", "decodeBase64Keys": ["bad key"]}, "spec.decodeBase64Keys[0]")


def test_decode_base64_keys_not_list() -> None:
    invalid({"path": "a", "decodeBase64Keys": "k"}, "spec.decodeBase64Keys must be a list")


def test_decode_base64_key_not_selected() -> None:
    invalid(
        {"path": "a", "keys": ["x"], "decodeBase64Keys": ["y"]}, "spec.decodeBase64Keys", "'y'", "spec.keys"
    )


def test_decode_base64_key_with_templates_only() -> None:
    invalid(
        {"path": "a", "templates": {"k": "v"}, "templatesOnly": True, "decodeBase64Keys": ["y"]},
        "spec.decodeBase64Keys",
        "templatesOnly",
        "b64decode",
    )


def test_decode_base64_key_also_templated() -> None:
    invalid(
        {"path": "a", "templates": {"y": "v"}, "decodeBase64Keys": ["y"]},
        "spec.decodeBase64Keys",
        "'y'",
        "templates",
    )


# --- target


def test_target() -> None:
    spec = parse(
        {
            "path": "a",
            "target": {
                "name": "db-credentials",
                "labels": {"app": "shop", "example.com/tier": "db", "empty": ""},
                "annotations": {"reloader.stakater.com/match": "true", "note": "any text: ✓"},
                "creationPolicy": "Merge",
            },
        }
    )
    assert spec.target == TargetSpec(
        name="db-credentials",
        labels={"app": "shop", "example.com/tier": "db", "empty": ""},
        annotations={"reloader.stakater.com/match": "true", "note": "any text: ✓"},
        creation_policy="Merge",
    )


@pytest.mark.parametrize("policy", ["Owner", "Orphan", "Merge"])
def test_creation_policies(policy: str) -> None:
    assert parse({"path": "a", "target": {"creationPolicy": policy}}).target.creation_policy == policy


@pytest.mark.parametrize("policy", ["owner", "Replace", 1])
def test_bad_creation_policy(policy: Any) -> None:
    invalid(
        {"path": "a", "target": {"creationPolicy": policy}},
        "spec.target.creationPolicy",
        "Owner, Orphan, Merge",
    )


def test_target_not_an_object() -> None:
    invalid({"path": "a", "target": "name"}, "spec.target must be an object")


@pytest.mark.parametrize("name", ["Upper", "under_score", "-x", "x-", "a" * 254, "", "a..b", 5])
def test_bad_target_name(name: Any) -> None:
    invalid({"path": "a", "target": {"name": name}}, "spec.target.name")


def test_target_name_dns_subdomain_ok() -> None:
    assert parse({"path": "a", "target": {"name": "a.b-c.d"}}).target.name == "a.b-c.d"
    assert parse({"path": "a", "target": {"name": "a" * 253}}).target.name == "a" * 253


def test_default_target_name_checked() -> None:
    invalid({"path": "a"}, "metadata.name", name="Bad_Name")


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ("x", "must be an object"),
        ({"a": 1}, "spec.target.labels.a must be a string"),
        ({"a": True}, "quote it"),
        ({1: "a"}, "not a string"),
        ({"bad key": "x"}, "not a valid label key"),
        ({"-a": "x"}, "not a valid label key"),
        ({"a" * 64: "x"}, "not a valid label key"),
        ({"Bad_Prefix/a": "x"}, "prefix"),
        ({"a": "bad value"}, "not a valid label value"),
        ({"a": "x" * 64}, "not a valid label value"),
        ({"vaultsync.io/managed": "x"}, "reserved"),
        ({"sub.vaultsync.io/x": "x"}, "reserved"),
    ],
)
def test_bad_labels(labels: Any, fragment: str) -> None:
    err = invalid({"path": "a", "target": {"labels": labels}}, "spec.target.labels", fragment)
    assert err.reason == INVALID_SPEC


def test_bad_annotations() -> None:
    invalid({"path": "a", "target": {"annotations": {"a": 1}}}, "spec.target.annotations.a")
    invalid(
        {"path": "a", "target": {"annotations": {"bad key": "x"}}},
        "spec.target.annotations",
        "annotation key",
    )
    invalid({"path": "a", "target": {"annotations": {"vaultsync.io/refresh": "x"}}}, "reserved")
    invalid({"path": "a", "target": {"annotations": {"a": "x" * 300_000}}}, "spec.target.annotations", "256")


# --- refresh


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("0", 0.0), ("0s", 0.0), (0, 0.0), ("1.5h", 5400.0)],
)
def test_refresh_interval(value: Any, seconds: float) -> None:
    assert parse({"path": "a", "refreshInterval": value}).refresh_interval == seconds


def test_refresh_interval_not_a_duration() -> None:
    err = invalid(
        {"path": "a", "refreshInterval": "5 minutes"}, "spec.refreshInterval '5 minutes' is not a duration"
    )
    assert "30s, 5m, 1h30m or 0" in err.message


def test_refresh_interval_negative() -> None:
    invalid({"path": "a", "refreshInterval": "-5m"}, "spec.refreshInterval", "negative")


def test_refresh_interval_number_without_unit() -> None:
    invalid({"path": "a", "refreshInterval": 300}, "spec.refreshInterval", "no unit", "300s")


@pytest.mark.parametrize("value", [True, [1], {"a": 1}])
def test_refresh_interval_wrong_type(value: Any) -> None:
    invalid({"path": "a", "refreshInterval": value}, "spec.refreshInterval")


# --- auth


def test_auth() -> None:
    spec = parse(
        {
            "path": "a",
            "auth": {
                "serviceAccountName": "shop",
                "role": "shop-reader",
                "method": "jwt",
                "mount": "jwt/cluster-a",
                "audience": "vault",
                "vaultNamespace": "team-a",
            },
        }
    )
    assert spec.auth == AuthSpec("shop", "shop-reader", "jwt", "jwt/cluster-a", "vault", "team-a")


def test_auth_method_kubernetes() -> None:
    assert parse({"path": "a", "auth": {"method": "kubernetes"}}).auth.method == "kubernetes"


@pytest.mark.parametrize(
    ("auth", "fragment"),
    [
        ("x", "spec.auth must be an object"),
        ({"method": "token"}, "spec.auth.method"),
        ({"method": 1}, "spec.auth.method must be a string"),
        ({"serviceAccountName": "Bad_SA"}, "spec.auth.serviceAccountName"),
        ({"serviceAccountName": 5}, "spec.auth.serviceAccountName"),
        ({"role": ""}, "spec.auth.role is empty"),
        ({"role": 1}, "spec.auth.role must be a string"),
        ({"mount": "/kubernetes"}, "spec.auth.mount"),
        ({"audience": " "}, "spec.auth.audience is empty"),
        ({"vaultNamespace": ""}, "spec.auth.vaultNamespace is empty"),
    ],
)
def test_bad_auth(auth: Any, fragment: str) -> None:
    invalid({"path": "a", "auth": auth}, fragment)


# --- rollout


def test_rollout_targets() -> None:
    spec = parse(
        {
            "path": "a",
            "rolloutRestartTargets": [
                {"kind": "Deployment", "name": "web"},
                {"kind": "StatefulSet", "name": "db"},
                {"kind": "DaemonSet", "name": "agent"},
                {"kind": "Deployment", "name": "web"},
            ],
        }
    )
    assert spec.rollout_restart_targets == (
        RolloutTarget("Deployment", "web"),
        RolloutTarget("StatefulSet", "db"),
        RolloutTarget("DaemonSet", "agent"),
    )


@pytest.mark.parametrize(
    ("targets", "fragment"),
    [
        ("web", "must be a list"),
        (["web"], "spec.rolloutRestartTargets[0] must be an object"),
        ([{"kind": "Pod", "name": "x"}], "spec.rolloutRestartTargets[0].kind"),
        ([{"name": "x"}], "spec.rolloutRestartTargets[0].kind"),
        ([{"kind": "Deployment"}], "spec.rolloutRestartTargets[0].name is missing"),
        ([{"kind": "Deployment", "name": "Web_1"}], "spec.rolloutRestartTargets[0].name"),
    ],
)
def test_bad_rollout_targets(targets: Any, fragment: str) -> None:
    invalid({"path": "a", "rolloutRestartTargets": targets}, fragment)


# --- misc


def test_is_dns_subdomain() -> None:
    assert is_dns_subdomain("a-b.c")
    assert not is_dns_subdomain("A")
    assert not is_dns_subdomain("a\n")
    assert not is_dns_subdomain(None)  # type: ignore[arg-type]


def test_long_values_are_shortened_in_messages() -> None:
    err = invalid({"path": "/" + "x" * 500})
    assert len(err.message) < 300


# --- issue 10 finding 1: no spec can reach another Vault endpoint; finding 9: header fields


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        # The token exfiltration probes, exactly as reported.
        (
            {"mount": "auth/token", "kv": "v1", "path": "lookup-self", "keys": ["id"]},
            ["spec.mount 'auth/token'", "Vault's own auth mount", "e.g. 'secret'"],
        ),
        ({"kv": "v1", "path": "%2e%2e/auth/token/lookup-self"}, ["spec.path", "contains '%'"]),
        ({"path": "x/%2e%2e/%2e%2e/%2e%2e/auth/token/lookup-self"}, ["spec.path", "contains '%'"]),
        ({"path": "x/%2E%2E/sys/mounts", "kv": "v1"}, ["spec.path", "contains '%'"]),
        ({"path": "x/../../auth/token/lookup-self"}, ["spec.path", "'..'"]),
        ({"path": "x\\..\\..\\auth"}, ["spec.path", "contains '\\\\'"]),
        ({"path": "lookup-self?x=1"}, ["spec.path", "contains '?'"]),
        ({"path": "a#/../../sys"}, ["spec.path", "contains '#'"]),
        ({"path": "a/\x00/b"}, ["spec.path", "a control character (U+0000)"]),
        ({"path": "a\x7fb"}, ["spec.path", "(U+007F)"]),
        ({"path": "a\x85b"}, ["spec.path", "(U+0085)"]),
        ({"path": "a\r\nX-Vault-Token: x"}, ["spec.path", "(U+000D)"]),
        ({"path": "a", "mount": "secret%2f..%2fsys"}, ["spec.mount", "contains '%'"]),
        ({"path": "a", "mount": "sec%72et"}, ["spec.mount", "contains '%'"]),
        ({"path": "a", "mount": "secret/.."}, ["spec.mount", "'..' segment"]),
        ({"sources": [{"path": "a", "mount": "x/%2e%2e"}]}, ["spec.sources[0].mount", "contains '%'"]),
        ({"sources": [{"path": "ok"}, {"path": "%2e%2e/x"}]}, ["spec.sources[1].path", "contains '%'"]),
    ],
)
def test_hostile_paths_are_refused(spec: dict[str, Any], fragments: list[str]) -> None:
    invalid(spec, *fragments)


@pytest.mark.parametrize(
    "mount",
    [
        "sys",
        "SYS",
        "Sys/mounts",
        "sys/internal/ui",
        "auth",
        "auth/token",
        "AUTH/Token",
        "auth/kubernetes",
        "identity",
        "identity/entity",
        "IdEnTiTy",
        "cubbyhole",
        "cubbyhole/x",
        "CubbyHole",
    ],
)
def test_system_mounts_are_refused(mount: str) -> None:
    invalid({"path": "a", "mount": mount}, "spec.mount", "Vault's own", "KV secrets engine mount")
    invalid({"sources": [{"path": "a", "mount": mount}]}, "spec.sources[0].mount", "Vault's own")
    invalid(
        {"path": "a"},
        "the operator's default mount (VAULTSYNC_DEFAULT_MOUNT)",
        "Vault's own",
        default_mount=mount,
    )


@pytest.mark.parametrize("mount", ["system", "authx", "my/sys", "kv/auth", "identityx", "cubby", "secret"])
def test_mounts_that_only_look_like_system_mounts_are_fine(mount: str) -> None:
    assert parse({"path": "a", "mount": mount}).sources[0].mount == mount


@pytest.mark.parametrize("path", ["a b/c", "ä/€", "a+b;c=d&e", "a/...", "a/..b", "a/.hidden", "~x", "a@b:c"])
def test_plain_paths_with_unusual_characters_are_accepted(path: str) -> None:
    assert parse({"path": path}).sources[0].path == path


@pytest.mark.parametrize(
    "mount", ["%2e%2e", "jwt/../token", "a\\b", "k8s?x", "k8s#x", "k8s\nx", "k8s/", "/k8s", "a//b"]
)
def test_hostile_auth_mounts_are_refused(mount: str) -> None:
    invalid({"path": "a", "auth": {"mount": mount}}, "spec.auth.mount")


@pytest.mark.parametrize("name", ["role", "audience", "vaultNamespace"])
@pytest.mark.parametrize(
    "value", ["team\r\nX-Vault-Token: s.x", "a\x00b", "a\tb", "a\x7f", "a\x85b", "\x1b[31m"]
)
def test_header_fields_refuse_control_characters(name: str, value: str) -> None:
    err = invalid({"path": "a", "auth": {name: value}}, f"spec.auth.{name}", "control characters")
    assert "\r" not in err.message and "\n" not in err.message and "\x00" not in err.message


def test_header_fields_accept_plain_text() -> None:
    auth = parse(
        {"path": "a", "auth": {"role": "shop reader", "audience": "vault", "vaultNamespace": "ä/b"}}
    ).auth
    assert (auth.role, auth.audience, auth.vault_namespace) == ("shop reader", "vault", "ä/b")


def test_refusals_show_only_a_short_rendering_of_the_value() -> None:
    err = invalid({"path": "%" + "x" * 900}, "spec.path")
    assert "x" * 100 not in err.message
    assert len(err.message) < 400


def test_sources_say_where_they_are_written() -> None:
    assert parse({"path": "a"}).sources[0].mount_field == "spec.mount"
    spec = parse({"sources": [{"path": "a"}, {"path": "b", "kv": "v1"}]})
    assert [s.mount_field for s in spec.sources] == ["spec.sources[0].mount", "spec.sources[1].mount"]
    assert spec.sources[1].kv_field == "spec.sources[1].kv"
    # Where a source is written does not make it another source.
    assert SourceSpec("m", "p", "v2", None, where="spec.sources[3]") == SourceSpec("m", "p", "v2", None)
