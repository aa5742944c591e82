"""`vaultsync convert` (vaultsync.migrate): each peer kind, and each field that cannot be mapped.

Fixtures under tests/fixtures/migrate/ are modelled on the peers' documented examples (our own files)."""

from __future__ import annotations

import copy
import io
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vaultsync import cli
from vaultsync.migrate import EXIT_OK, EXIT_UNMAPPED, EXIT_USAGE, Options, convert
from vaultsync.migrate.gotemplate import TemplateNotTranslated, secrets_map_resolver, translate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "migrate"


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((FIXTURES / name).read_text()) if d]


def by_kind(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = (o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
    return found


def unmapped(result: Any) -> list[tuple[str, str]]:
    return [(f.source, f.field) for f in result.findings if f.severity == "unmapped"]


def doc(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == kind)


# HashiCorp's Vault Secrets Operator -------------------------------------------------------------------
def test_vso_documented_example_maps_completely() -> None:
    result = convert(load("vso.yaml"))
    assert unmapped(result) == []
    assert result.exit_code == EXIT_OK
    static = by_kind(result.objects, "VaultSecret", "app-config")
    assert static["metadata"]["namespace"] == "tenant-1"
    assert static["spec"] == {
        "path": "apps/app/config",
        "mount": "kvv2",
        "kv": "v2",
        "refreshInterval": "30s",
        "target": {"name": "app-config", "creationPolicy": "Owner", "labels": {"team": "a"}},
        "rolloutRestartTargets": [{"kind": "Deployment", "name": "app"}],
        "auth": {
            "method": "kubernetes",
            "role": "app",
            "serviceAccountName": "app",
            "audience": "vault",
            "mount": "kubernetes",
            "vaultNamespace": "team-a",
        },
        "connection": "tenant-1-vault",
    }
    connection = by_kind(result.objects, "VaultConnection", "tenant-1-vault")
    assert "namespace" not in connection["metadata"]  # cluster-scoped
    assert connection["spec"] == {
        "address": "https://vault.vault.svc:8200",
        "tlsServerName": "vault.vault.svc",
        "caSecretRef": {"namespace": "tenant-1", "name": "vault-ca", "key": "ca.crt"},
        "allowedNamespaces": ["tenant-1"],
    }
    dynamic = by_kind(result.objects, "VaultDynamicSecret", "app-db")["spec"]
    assert (dynamic["mount"], dynamic["path"], dynamic["renewalPercent"], dynamic["revoke"]) == (
        "database",
        "creds/app",
        60,
        True,
    )
    pki = by_kind(result.objects, "VaultPKISecret", "app-tls")["spec"]
    assert pki["commonName"] == "app.example.com"
    assert pki["altNames"] == ["app.tenant-1.svc"]
    assert pki["ttl"] == "1h"
    assert pki["renewalPercent"] == 75  # renew 15m before the end of 1h
    assert not any(o["kind"] == "VaultAuth" for o in result.objects)


def test_vso_defaults_that_differ_are_written_out() -> None:
    documents = load("vso.yaml")
    static = doc(documents, "VaultStaticSecret")
    del static["spec"]["refreshAfter"], static["spec"]["vaultAuthRef"]
    static["spec"]["destination"] = {
        "name": "app-config"
    }  # create: false: VSO writes into an existing Secret
    dynamic = doc(documents, "VaultDynamicSecret")
    del dynamic["spec"]["revoke"]
    result = convert([static, dynamic])
    spec = by_kind(result.objects, "VaultSecret", "app-config")["spec"]
    assert spec["refreshInterval"] == "0"  # VSO does not re-read without refreshAfter
    assert spec["target"]["creationPolicy"] == "Merge"
    assert "auth" not in spec  # VSO's default VaultAuth: the operator's own identity
    assert by_kind(result.objects, "VaultDynamicSecret", "app-db")["spec"]["revoke"] is False  # VSO's default
    assert any(f.field == "spec.refreshAfter" and f.severity == "note" for f in result.findings)


def test_vso_simple_templates_become_jinja() -> None:
    static = doc(load("vso.yaml"), "VaultStaticSecret")
    static["spec"]["destination"]["transformation"] = {
        "excludeRaw": True,
        "includes": ["^username$"],
        "templates": {
            "url": {
                "text": 'postgres://{{ get .Secrets "username" }}:{{ .Secrets.password }}@db/{{ .Namespace }}'
            }
        },
    }
    result = convert([static])
    spec = by_kind(result.objects, "VaultSecret", "app-config")["spec"]
    assert spec["templates"] == {
        "url": "postgres://{{ secret['username'] }}:{{ secret['password'] }}@db/{{ namespace }}"
    }
    assert spec["keys"] == ["username"]


VSO_UNMAPPED = [
    ("VaultStaticSecret", ["spec", "syncConfig"], {"instantUpdates": True}, "spec.syncConfig.instantUpdates"),
    ("VaultStaticSecret", ["spec", "refreshAfter"], "10ms", "spec.refreshAfter"),
    ("VaultStaticSecret", ["spec", "refreshAfter"], "soon", "spec.refreshAfter"),
    (
        "VaultStaticSecret",
        ["spec", "destination", "transformation"],
        {"excludes": ["^_raw$"]},
        "spec.destination.transformation.excludes",
    ),
    (
        "VaultStaticSecret",
        ["spec", "destination", "transformation"],
        {"includes": ["user.*"]},
        "spec.destination.transformation.includes",
    ),
    (
        "VaultStaticSecret",
        ["spec", "destination", "transformation"],
        {"transformationRefs": [{"name": "shared"}]},
        "spec.destination.transformation.transformationRefs",
    ),
    (
        "VaultStaticSecret",
        ["spec", "destination", "transformation"],
        {"templates": {"x": {"text": '{{ get .Secrets "a" | b64enc }}'}}},
        "spec.destination.transformation.templates.x",
    ),
    (
        "VaultStaticSecret",
        ["spec", "rolloutRestartTargets"],
        [{"kind": "argo.Rollout", "name": "app"}],
        "spec.rolloutRestartTargets[0].kind",
    ),
    ("VaultStaticSecret", ["spec", "vaultAuthRef"], "elsewhere", "spec.vaultAuthRef"),
    ("VaultDynamicSecret", ["spec", "renewalPercent"], 95, "spec.renewalPercent"),
    ("VaultDynamicSecret", ["spec", "requestHTTPMethod"], "DELETE", "spec.requestHTTPMethod"),
    ("VaultPKISecret", ["spec", "format"], "der", "spec.format"),
    ("VaultPKISecret", ["spec", "privateKeyFormat"], "pkcs8", "spec.privateKeyFormat"),
    ("VaultPKISecret", ["spec", "otherSans"], ["1.2.3;UTF8:x"], "spec.otherSans"),
    ("VaultPKISecret", ["spec", "notAfter"], "2030-01-01T00:00:00Z", "spec.notAfter"),
    ("VaultPKISecret", ["spec", "destination", "type"], "Opaque", "spec.destination.type"),
    ("VaultPKISecret", ["spec", "ttl"], None, "spec.expiryOffset"),  # an offset without a ttl
    ("VaultConnection", ["spec", "skipTLSVerify"], True, "spec.skipTLSVerify"),
    ("VaultConnection", ["spec", "caCertPath"], "/etc/ca.pem", "spec.caCertPath"),
    ("VaultConnection", ["spec", "headers"], {"X-A": "b"}, "spec.headers"),
    ("VaultAuth", ["spec", "method"], "appRole", "spec.method"),
    ("VaultAuth", ["spec", "kubernetes", "audiences"], ["a", "b"], "spec.kubernetes.audiences"),
    ("VaultAuth", ["spec", "params"], {"x": "y"}, "spec.params"),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "field"), VSO_UNMAPPED, ids=[c[3] + "-" + c[0] for c in VSO_UNMAPPED]
)
def test_vso_unmappable_fields_are_listed(kind: str, path: list[str], value: Any, field: str) -> None:
    documents = load("vso.yaml")
    target = doc(documents, kind)
    node = target
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    result = convert(documents)
    assert result.exit_code == EXIT_UNMAPPED
    assert any(field in f.field and f.severity == "unmapped" for f in result.findings), result.findings


def test_a_vault_auth_problem_is_listed_on_every_object_that_uses_it() -> None:
    documents = load("vso.yaml")
    doc(documents, "VaultAuth")["spec"]["kubernetes"]["secretRef"] = "jwt"
    result = convert(documents)
    sources = {s for s, field in unmapped(result) if "secretRef" in field}
    assert {
        "VaultAuth tenant-1/app-auth",
        "VaultStaticSecret tenant-1/app-config",
        "VaultDynamicSecret tenant-1/app-db",
        "VaultPKISecret tenant-1/app-tls",
    } <= sources


def test_a_connection_that_is_referenced_but_missing_is_listed_unless_no_connections() -> None:
    documents = [d for d in load("vso.yaml") if d["kind"] != "VaultConnection"]
    assert ("VaultConnection tenant-1-vault", "-") in unmapped(convert(documents))
    result = convert(documents, Options(no_connections=True))
    assert unmapped(result) == []
    assert all("connection" not in o["spec"] for o in result.objects)


# External Secrets -------------------------------------------------------------------------------------
def test_eso_documented_example_maps_completely() -> None:
    result = convert(load("eso.yaml"))
    assert unmapped(result) == []
    vs = by_kind(result.objects, "VaultSecret", "vault-example")
    assert vs["spec"] == {
        "auth": {
            "method": "kubernetes",
            "mount": "kubernetes",
            "role": "demo",
            "serviceAccountName": "my-sa",
        },
        "connection": "example-vault-backend",
        "mount": "secret",
        "path": "foo",
        "kv": "v2",
        "target": {"name": "example-sync"},
        "templates": {"foobar": "{{ secret['my-value'] }}"},
        "templatesOnly": True,
        "refreshInterval": "15s",
    }
    assert by_kind(result.objects, "VaultConnection", "example-vault-backend")["spec"] == {
        "address": "https://vault.acme.org",
        "allowedNamespaces": ["example"],
    }
    cluster = by_kind(result.objects, "VaultConnection", "vault-cluster")["spec"]
    assert (cluster["namespace"], cluster["allowedNamespaces"]) == ("team-a", ["*"])
    vsset = by_kind(result.objects, "ClusterVaultSecretSet", "shared-db")["spec"]
    assert vsset["generators"] == {"namespaces": {"matchLabels": {"shared-db": "true"}}}
    child = vsset["template"]["spec"]
    assert child["templates"] == {
        "username": "{{ secret['username'] }}",
        "password": "{{ secret['password'] }}",
    }
    assert (child["type"], child["templatesOnly"], child["auth"]["method"]) == (
        "kubernetes.io/basic-auth",
        True,
        "jwt",
    )


def test_eso_keys_copied_as_they_are_and_several_paths() -> None:
    documents = load("eso.yaml")
    es = doc(documents, "ExternalSecret")
    es["spec"]["data"] = [
        {"secretKey": "username", "remoteRef": {"key": "apps/db", "property": "username"}},
        {"secretKey": "api", "remoteRef": {"key": "/secret/apps/api", "property": "token", "version": "3"}},
    ]
    result = convert(documents)
    spec = by_kind(result.objects, "VaultSecret", "vault-example")["spec"]
    assert spec["sources"] == [
        {"mount": "secret", "path": "apps/db", "kv": "v2"},
        {"mount": "secret", "path": "apps/api", "kv": "v2", "version": 3},
    ]
    assert spec["keys"] == ["username"]
    assert spec["templates"] == {"api": "{{ secret['token'] }}"}
    assert any("KeyConflict" in f.reason for f in result.findings if f.severity == "note")


def test_eso_data_from_extract_copies_every_key() -> None:
    documents = load("eso.yaml")
    es = doc(documents, "ExternalSecret")
    del es["spec"]["data"]
    es["spec"]["dataFrom"] = [{"extract": {"key": "apps/db"}}]
    doc(documents, "SecretStore")["spec"]["provider"]["vault"]["version"] = "v1"
    spec = by_kind(convert(documents).objects, "VaultSecret", "vault-example")["spec"]
    assert (spec["mount"], spec["path"], spec["kv"]) == ("secret", "apps/db", "v1")
    assert "keys" not in spec and "templates" not in spec


ESO_UNMAPPED = [
    ("ExternalSecret", ["spec", "data", 0, "remoteRef", "metadataPolicy"], "Fetch", "metadataPolicy"),
    ("ExternalSecret", ["spec", "data", 0, "remoteRef", "decodingStrategy"], "Base64", "decodingStrategy"),
    ("ExternalSecret", ["spec", "data", 0, "remoteRef", "property"], "foo.nested.bar", "remoteRef.property"),
    ("ExternalSecret", ["spec", "dataFrom"], [{"find": {"name": {"regexp": ".*"}}}], "dataFrom[0].find"),
    (
        "ExternalSecret",
        ["spec", "dataFrom"],
        [{"rewrite": [{"regexp": {"source": "a", "target": "b"}}]}],
        "rewrite",
    ),
    ("ExternalSecret", ["spec", "target", "creationPolicy"], "None", "target.creationPolicy"),
    ("ExternalSecret", ["spec", "target", "deletionPolicy"], "Delete", "target.deletionPolicy"),
    ("ExternalSecret", ["spec", "target", "immutable"], True, "target.immutable"),
    (
        "ExternalSecret",
        ["spec", "target", "template"],
        {"engineVersion": "v1", "data": {"a": "b"}},
        "engineVersion",
    ),
    (
        "ExternalSecret",
        ["spec", "target", "template"],
        {"data": {"a": "{{ .foobar | upper }}"}},
        "template.data.a",
    ),
    ("ExternalSecret", ["spec", "syncWindows"], {"kind": "Allow", "windows": []}, "syncWindows"),
    ("ExternalSecret", ["spec", "secretStoreRef", "name"], "elsewhere", "secretStoreRef"),
    ("SecretStore", ["spec", "provider"], {"aws": {"service": "SecretsManager"}}, "spec.provider"),
    (
        "SecretStore",
        ["spec", "provider", "vault", "auth"],
        {"tokenSecretRef": {"name": "t", "key": "k"}},
        "tokenSecretRef",
    ),
    ("SecretStore", ["spec", "provider", "vault", "auth"], {"appRole": {"path": "approle"}}, "appRole"),
    ("SecretStore", ["spec", "provider", "vault", "headers"], {"X-A": "b"}, "vault.headers"),
    (
        "SecretStore",
        ["spec", "provider", "vault", "caProvider"],
        {"type": "ConfigMap", "name": "ca"},
        "caProvider",
    ),
    ("ClusterSecretStore", ["spec", "conditions"], [{"namespaceRegexes": ["team-.*"]}], "namespaceRegexes"),
    (
        "ClusterExternalSecret",
        ["spec", "namespaceSelectors"],
        [{"matchExpressions": [{"key": "a"}]}],
        "namespaceSelectors",
    ),
]


@pytest.mark.parametrize(("kind", "path", "value", "field"), ESO_UNMAPPED, ids=[c[3] for c in ESO_UNMAPPED])
def test_eso_unmappable_fields_are_listed(kind: str, path: list[Any], value: Any, field: str) -> None:
    documents = load("eso.yaml")
    node: Any = doc(documents, kind)
    for key in path[:-1]:
        node = node[key] if isinstance(key, int) else node.setdefault(key, {})
    node[path[-1]] = value
    result = convert(documents)
    assert result.exit_code == EXIT_UNMAPPED
    assert any(field in f.field for f in result.findings if f.severity == "unmapped"), result.findings


def test_a_store_login_problem_is_listed_on_the_store_and_on_its_users() -> None:
    documents = load("eso.yaml")
    doc(documents, "SecretStore")["spec"]["provider"]["vault"]["auth"] = {
        "tokenSecretRef": {"name": "t", "key": "k"}
    }
    sources = {s for s, field in unmapped(convert(documents)) if "tokenSecretRef" in field}
    assert sources == {"SecretStore example/vault-backend", "ExternalSecret example/vault-example"}


# ricoberger's vault-secrets-operator ------------------------------------------------------------------
def test_ricoberger_documented_examples_map_completely() -> None:
    result = convert(load("ricoberger.yaml"), Options(kv1_mounts=frozenset({"kvv1"})))
    assert unmapped(result) == []
    kv1 = by_kind(result.objects, "VaultSecret", "kvv1-example-vaultsecret")["spec"]
    assert kv1 == {
        "mount": "kvv1",
        "path": "example-vaultsecret",
        "kv": "v1",
        "keys": ["foo"],
        "type": "Opaque",
    }
    kv2 = by_kind(result.objects, "VaultSecret", "kvv2-example-vaultsecret")["spec"]
    assert (kv2["kv"], kv2["version"]) == ("v2", 2)
    templated = by_kind(result.objects, "VaultSecret", "kvv1-templated")
    assert templated["spec"]["templates"] == {
        "fooUri": "https://user:{{ secret['foo'] }}@{{ namespace }}.somesite.tld/api"
    }
    assert templated["spec"]["templatesOnly"] is True
    assert templated["metadata"]["annotations"] == {"redisdb": "0"}
    pki = by_kind(result.objects, "VaultPKISecret", "test-pki")["spec"]
    assert (pki["mount"], pki["role"], pki["commonName"], pki["ttl"]) == (
        "pki",
        "example-dot-com",
        "www.my-website.com",
        "120h",
    )


def test_ricoberger_paths_role_merge_and_binary() -> None:
    (first, *_) = load("ricoberger.yaml")
    first["spec"].update(
        {"paths": ["kvv2/other"], "vaultRole": "app", "reconcileStrategy": "Merge", "isBinary": True}
    )
    spec = convert([first]).objects[0]["spec"]
    assert spec["sources"] == [
        {"mount": "kvv1", "path": "example-vaultsecret", "kv": "v2"},
        {"mount": "kvv2", "path": "other", "kv": "v2"},
    ]
    assert spec["auth"] == {"role": "app"}
    assert spec["target"] == {"creationPolicy": "Merge"}
    assert spec["decodeBase64Keys"] == ["foo"]


RICOBERGER_UNMAPPED = [
    (0, "isBinary", True, "spec.isBinary", ["keys"]),
    (2, "templates", {"x": "{% .Secrets.foo | b64enc %}"}, "spec.templates.x", []),
    (3, "engineOptions", {"common_name": "a", "format": "der"}, "spec.engineOptions.format", []),
    (3, "type", "Opaque", "spec.type", []),
    (0, "reconcileStrategy", "Patch", "spec.reconcileStrategy", []),
]


@pytest.mark.parametrize(
    ("index", "key", "value", "field", "drop"), RICOBERGER_UNMAPPED, ids=[c[3] for c in RICOBERGER_UNMAPPED]
)
def test_ricoberger_unmappable_fields_are_listed(
    index: int, key: str, value: Any, field: str, drop: list[str]
) -> None:
    documents = load("ricoberger.yaml")
    documents[index]["spec"][key] = value
    for name in drop:
        documents[index]["spec"].pop(name)
    result = convert(documents)
    assert result.exit_code == EXIT_UNMAPPED
    assert any(f.field == field for f in result.findings if f.severity == "unmapped"), result.findings


# Everything -------------------------------------------------------------------------------------------
def test_converted_vaultsecrets_pass_our_own_parser_and_a_refused_one_is_listed() -> None:
    documents = load("ricoberger.yaml")
    documents[0]["spec"]["keys"] = ["not a key"]
    result = convert(documents)
    assert ("VaultSecret default/kvv1-example-vaultsecret", "spec") in unmapped(result)


MALFORMED = [
    ("vso.yaml", "VaultStaticSecret", {"spec": "not an object"}),
    ("vso.yaml", "VaultAuth", {"spec": ["a", "list"]}),
    ("vso.yaml", "VaultConnection", {"spec": 42}),
    ("eso.yaml", "ExternalSecret", {"spec": {"secretStoreRef": {"name": "vault-backend"}, "data": "x"}}),
    ("eso.yaml", "SecretStore", {"spec": {"provider": "vault"}}),
    ("ricoberger.yaml", "VaultSecret", {"metadata": "x", "spec": {"paths": 7}}),
]


@pytest.mark.parametrize(("fixture", "kind", "change"), MALFORMED, ids=[f"{c[1]}-{c[2]}" for c in MALFORMED])
def test_a_malformed_object_is_listed_not_a_crash(fixture: str, kind: str, change: dict[str, Any]) -> None:
    documents = load(fixture)
    doc(documents, kind).update(change)
    result = convert(documents)
    assert result.exit_code == EXIT_UNMAPPED
    assert any(f.severity == "unmapped" for f in result.findings)


def test_our_own_kinds_and_same_named_kinds_of_other_groups_pass_through() -> None:
    ours = {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultSecret",
        "metadata": {"name": "a"},
        "spec": {"path": "x"},
    }
    other = {"apiVersion": "example.com/v1", "kind": "ExternalSecret", "metadata": {"name": "b"}, "spec": {}}
    result = convert([copy.deepcopy(ours), copy.deepcopy(other)])
    assert result.objects == [ours, other]
    assert result.exit_code == EXIT_OK


def test_objects_of_other_kinds_pass_through_unchanged() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {"replicas": 1},
    }
    result = convert([copy.deepcopy(deployment), *load("ricoberger.yaml")[:1]])
    assert result.objects[-1] == deployment
    assert result.exit_code == EXIT_OK


def test_source_bookkeeping_is_not_copied() -> None:
    (first, *_) = load("ricoberger.yaml")
    first["metadata"].update(
        {
            "uid": "123",
            "resourceVersion": "9",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"},
        }
    )
    first["status"] = {"conditions": []}
    converted = convert([first]).objects[0]
    assert converted["metadata"] == {
        "name": "kvv1-example-vaultsecret",
        "namespace": "default",
        "annotations": {"team": "a"},
    }
    assert "status" not in converted


def test_go_templates_refuse_jinja_delimiters_in_literal_text() -> None:
    with pytest.raises(TemplateNotTranslated):
        translate("{% raw %}{{ .Secrets.a }}", secrets_map_resolver())


# The command ------------------------------------------------------------------------------------------
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert", *args])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_cli_converts_files_and_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, str(FIXTURES / "vso.yaml"), "--quiet")
    assert code == EXIT_OK
    assert err == ""
    kinds = [d["kind"] for d in yaml.safe_load_all(out)]
    assert kinds == ["VaultConnection", "VaultSecret", "VaultDynamicSecret", "VaultPKISecret"]
    code, out, _ = run_cli(
        monkeypatch, capsys, "--kv1-mount", "kvv1", stdin=(FIXTURES / "ricoberger.yaml").read_text()
    )
    assert code == EXIT_OK
    assert [d["spec"].get("kv") for d in yaml.safe_load_all(out)][:2] == ["v1", "v2"]


def test_cli_lists_what_did_not_map_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = load("vso.yaml")
    doc(documents, "VaultConnection")["spec"]["skipTLSVerify"] = True
    code, out, err = run_cli(monkeypatch, capsys, "-", stdin=yaml.safe_dump_all(documents))
    assert code == EXIT_UNMAPPED
    assert (
        "not mapped: VaultConnection tenant-1/vault: spec.skipTLSVerify: vaultsync always verifies Vault's "
        "certificate" in err
    )
    assert "note: " in err
    assert "VaultSecret" in out  # the rest is still written


def test_cli_input_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(monkeypatch, capsys, str(tmp_path / "missing.yaml"))
    assert code == EXIT_USAGE
    assert f"cannot read {tmp_path / 'missing.yaml'}: No such file" in err
    code, _, err = run_cli(monkeypatch, capsys, stdin="a: [b\n")
    assert code == EXIT_USAGE and "not valid YAML (line" in err
    code, _, err = run_cli(monkeypatch, capsys, stdin="- just\n- a list\n")
    assert code == EXIT_USAGE and "not a Kubernetes object" in err


def test_every_unmappable_field_tested_here_is_in_docs_migration_md() -> None:
    doc_text = (FIXTURES.parent.parent.parent / "docs" / "migration.md").read_text()
    fields = [c[3] for c in VSO_UNMAPPED] + [c[3] for c in ESO_UNMAPPED] + [c[3] for c in RICOBERGER_UNMAPPED]
    # A template's own key (templates.x, template.data.a) stands for "templates".
    leaves = {re.sub(r"\.(templates|data)\.[^.]+$", r".\1", f).split(".")[-1].split("[")[0] for f in fields}
    assert sorted(leaf for leaf in leaves if not re.search(rf"`[^`\n]*\b{re.escape(leaf)}\b", doc_text)) == []
