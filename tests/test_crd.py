"""Pure checks of crds/vaultsecrets.yaml (no API server): names, printer columns, documentation of every
field, the structural-schema rules of apiextensions.k8s.io/v1 on Kubernetes 1.20, the patterns; that the
file is what the declarations of vaultsync.api generate, and that the schema and the parser agree.

Patterns are compiled with Python's `re`, which agrees with the API server's RE2 for these patterns
(no look-arounds or back-references: see test_patterns_are_re2_compatible).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultsync.api import KINDS, VAULT_SECRET
from vaultsync.api.generate import expected_files, render_docs
from vaultsync.api.generate import main as generate_main
from vaultsync.api.schema import EXACT_CHECKS, Field
from vaultsync.api.schema import crd as declared_crd
from vaultsync.core.errors import SyncError
from vaultsync.core.spec import CHECKS, parse_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
CRD_FILE = REPO_ROOT / "crds" / "vaultsecrets.yaml"

Schema = dict[str, Any]

JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
# Fields that a structural schema forbids inside anyOf/allOf/oneOf/not (Kubernetes 1.20 rules).
FORBIDDEN_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    with CRD_FILE.open() as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    assert len(docs) == 1
    document: dict[str, Any] = docs[0]
    return document


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    versions: list[dict[str, Any]] = crd["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


@pytest.fixture(scope="module")
def root(version: dict[str, Any]) -> Schema:
    schema: Schema = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture(scope="module")
def spec(root: Schema) -> Schema:
    schema: Schema = root["properties"]["spec"]
    return schema


@pytest.fixture(scope="module")
def status(root: Schema) -> Schema:
    schema: Schema = root["properties"]["status"]
    return schema


def _children(schema: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """The schemas nested in `schema` outside junctors: properties, items and additionalProperties."""
    for name, sub in (schema.get("properties") or {}).items():
        yield f"{path}.{name}", sub
    if isinstance(schema.get("items"), dict):
        yield f"{path}[]", schema["items"]
    if isinstance(schema.get("additionalProperties"), dict):
        yield f"{path}{{}}", schema["additionalProperties"]


def walk(schema: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """Every schema node under (and including) `schema`, with a readable path; junctors not entered."""
    yield path, schema
    for child_path, child in _children(schema, path):
        yield from walk(child, child_path)


def walk_all(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every dict in the document, junctors included."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk_all(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_all(value, f"{path}/{i}")


def pattern_of(schema: Schema) -> re.Pattern[str]:
    return re.compile(schema["pattern"])


def matches(schema: Schema, value: str) -> bool:
    return pattern_of(schema).search(value) is not None


# ------------------------------------------------------------------------------------------ identity


def test_names_and_scope(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "vaultsecrets.vaultsync.io"
    spec = crd["spec"]
    assert spec["group"] == "vaultsync.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == "VaultSecret"
    assert names["plural"] == "vaultsecrets"
    assert names["singular"] == "vaultsecret"
    assert names["shortNames"] == ["vsec"]
    assert names["categories"] == ["vaultsync"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("READY", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("REASON", "string", '.status.conditions[?(@.type=="Ready")].reason'),
        ("SECRET", "string", ".status.secretName"),
        ("LAST SYNC", "date", ".status.lastSyncTime"),
        ("AGE", "date", ".metadata.creationTimestamp"),
    ]


def test_crds_kustomization_lists_the_crd() -> None:
    kustomization = yaml.safe_load((REPO_ROOT / "crds" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["vaultsecrets.yaml"]


# ------------------------------------------------------------------------------------- documentation


def test_every_field_has_a_description(root: Schema) -> None:
    missing = [
        path
        for top in ("spec", "status")
        for path, node in walk(root["properties"][top], top)
        if not str(node.get("description", "")).strip()
    ]
    assert missing == []


def test_contract_fields_are_present(spec: Schema, status: Schema) -> None:
    assert {
        "path",
        "mount",
        "kv",
        "version",
        "sources",
        "keys",
        "templates",
        "templatesOnly",
        "type",
        "decodeBase64Keys",
        "target",
        "refreshInterval",
        "auth",
        "rolloutRestartTargets",
    } <= set(spec["properties"])
    assert set(spec["properties"]["sources"]["items"]["properties"]) == {"path", "mount", "kv", "version"}
    assert set(spec["properties"]["target"]["properties"]) == {
        "name",
        "labels",
        "annotations",
        "creationPolicy",
    }
    assert set(spec["properties"]["auth"]["properties"]) == {
        "serviceAccountName",
        "role",
        "method",
        "mount",
        "audience",
        "vaultNamespace",
    }
    assert set(spec["properties"]["rolloutRestartTargets"]["items"]["properties"]) == {"kind", "name"}
    assert {
        "conditions",
        "observedGeneration",
        "secretName",
        "lastSyncTime",
        "vaultVersion",
        "secretMAC",
    } <= set(status["properties"])
    condition = status["properties"]["conditions"]["items"]["properties"]
    assert set(condition) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


# -------------------------------------------------------------------------------- structural schema


def test_no_cel_rules(crd: dict[str, Any]) -> None:
    """Kubernetes 1.20 has no x-kubernetes-validations."""
    assert [p for p, node in walk_all(crd) if "x-kubernetes-validations" in node] == []


def test_every_node_has_a_type(root: Schema) -> None:
    untyped = [
        path
        for path, node in walk(root, "")
        if "type" not in node
        and not node.get("x-kubernetes-int-or-string")
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert untyped == []


def test_junctors_hold_only_value_validations(root: Schema) -> None:
    bad: list[str] = []

    def check_junctor(node: Any, path: str, int_or_string: bool) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                check_junctor(item, f"{path}/{i}", int_or_string)
            return
        assert isinstance(node, dict), path
        for key in FORBIDDEN_IN_JUNCTORS:
            # The one exception: x-kubernetes-int-or-string's anyOf [{type: integer}, {type: string}].
            if key in node and not (int_or_string and key == "type" and set(node) == {"type"}):
                bad.append(f"{path}: {key}")
        for key in JUNCTORS:
            if key in node:
                check_junctor(node[key], f"{path}/{key}", False)
        for name, sub in (node.get("properties") or {}).items():
            check_junctor(sub, f"{path}/properties/{name}", False)

    def mirrored(junctor: Any, outer: Schema, path: str) -> None:
        """Properties named inside a junctor must exist in the structural schema beside it."""
        if isinstance(junctor, list):
            for item in junctor:
                mirrored(item, outer, path)
            return
        for name in junctor.get("properties") or {}:
            if name not in (outer.get("properties") or {}):
                bad.append(f"{path}: {name} is not mirrored outside the junctor")
        for key in JUNCTORS:
            if key in junctor:
                mirrored(junctor[key], outer, path)

    for path, node in walk(root, ""):
        for key in JUNCTORS:
            if key in node:
                check_junctor(node[key], f"{path}/{key}", bool(node.get("x-kubernetes-int-or-string")))
                mirrored(node[key], node, f"{path}/{key}")
    assert bad == []


def test_status_is_typed_not_preserved(status: Schema) -> None:
    assert "x-kubernetes-preserve-unknown-fields" not in status
    # Only kopf's own bookkeeping may hold arbitrary fields.
    preserved = [p for p, node in walk(status, "status") if node.get("x-kubernetes-preserve-unknown-fields")]
    assert preserved == ["status.kopf"]


def test_defaults_satisfy_their_own_schema(root: Schema) -> None:
    for path, node in walk(root, ""):
        if "default" not in node:
            continue
        value = node["default"]
        if "enum" in node:
            assert value in node["enum"], path
        if "pattern" in node and isinstance(value, str):
            assert matches(node, value), path


def test_defaults(spec: Schema) -> None:
    props = spec["properties"]
    assert props["kv"]["default"] == "v2"
    assert props["type"]["default"] == "Opaque"
    assert props["templatesOnly"]["default"] is False
    assert props["refreshInterval"]["default"] == "1h"
    assert props["target"]["properties"]["creationPolicy"]["default"] == "Owner"
    # An unset source kv inherits spec.kv, so it must not be defaulted by the API server.
    assert "default" not in props["sources"]["items"]["properties"]["kv"]


# ------------------------------------------------------------------------------- rules across fields


def test_path_or_sources_required_not_both(spec: Schema) -> None:
    assert spec["anyOf"] == [{"required": ["path"]}, {"required": ["sources"]}]
    assert {"required": ["path", "sources"]} in spec["not"]["anyOf"]
    assert spec["properties"]["sources"]["minItems"] == 1
    assert spec["properties"]["sources"]["maxItems"] == 16
    assert spec["properties"]["sources"]["items"]["required"] == ["path"]


def test_version_only_with_kv_v2(spec: Schema) -> None:
    v1_with_version = {"required": ["version", "kv"], "properties": {"kv": {"enum": ["v1"]}}}
    assert v1_with_version in spec["not"]["anyOf"]
    assert spec["properties"]["sources"]["items"]["not"] == v1_with_version
    assert {"required": ["version", "sources"]} in spec["not"]["anyOf"]
    assert spec["properties"]["version"]["minimum"] == 1
    assert spec["properties"]["sources"]["items"]["properties"]["version"]["minimum"] == 1


def test_enums(spec: Schema, status: Schema) -> None:
    props = spec["properties"]
    assert props["kv"]["enum"] == ["v1", "v2"]
    assert props["sources"]["items"]["properties"]["kv"]["enum"] == ["v1", "v2"]
    assert props["target"]["properties"]["creationPolicy"]["enum"] == ["Owner", "Orphan", "Merge"]
    assert props["auth"]["properties"]["method"]["enum"] == ["kubernetes", "jwt"]
    assert props["rolloutRestartTargets"]["items"]["properties"]["kind"]["enum"] == [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
    ]
    assert props["rolloutRestartTargets"]["items"]["required"] == ["kind", "name"]
    conditions = status["properties"]["conditions"]
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["required"] == ["type", "status"]


def test_status_formats(status: Schema) -> None:
    props = status["properties"]
    assert props["lastSyncTime"]["format"] == "date-time"
    assert props["conditions"]["items"]["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert props["observedGeneration"]["format"] == "int64"
    assert props["vaultVersion"]["additionalProperties"]["type"] == "integer"


# ---------------------------------------------------------------------------------------- patterns


def test_patterns_are_re2_compatible(root: Schema) -> None:
    """RE2 has no look-arounds and no back-references; Python would silently accept them."""
    for path, node in walk_all(root):
        if "pattern" in node:
            assert not re.search(r"\(\?[=!<]|\\[1-9]", node["pattern"]), path
            re.compile(node["pattern"])


@pytest.mark.parametrize(
    "value", ["0", "0s", "30s", "5m", "1h", "1h30m", "1h30m15s", "90s", "1.5h", "10m30s"]
)
def test_refresh_interval_accepts(spec: Schema, value: str) -> None:
    assert matches(spec["properties"]["refreshInterval"], value)


@pytest.mark.parametrize(
    "value", ["", "30", "1d", "500ms", "-1s", "+1s", "1h ", " 1h", "1.h", "h", "1 h", "00", "1H"]
)
def test_refresh_interval_rejects(spec: Schema, value: str) -> None:
    assert not matches(spec["properties"]["refreshInterval"], value)


def test_refresh_interval_takes_the_number_zero(spec: Schema) -> None:
    """YAML reads `refreshInterval: 0` as an integer: the schema lets 0 (and only 0) through as one."""
    field = spec["properties"]["refreshInterval"]
    assert field["x-kubernetes-int-or-string"] is True
    assert field["minimum"] == 0
    assert field["maximum"] == 0


@pytest.mark.parametrize("value", ["shop-db", "a", "0", "a.b-c", "x" * 253, "db1.shop.example"])
def test_target_name_accepts(spec: Schema, value: str) -> None:
    field = spec["properties"]["target"]["properties"]["name"]
    assert matches(field, value)
    assert len(value) <= field["maxLength"]


@pytest.mark.parametrize("value", ["", "Shop", "-a", "a-", ".a", "a.", "a_b", "a b", "a/b", "ä"])
def test_target_name_rejects(spec: Schema, value: str) -> None:
    assert not matches(spec["properties"]["target"]["properties"]["name"], value)


def test_target_name_length(spec: Schema) -> None:
    assert spec["properties"]["target"]["properties"]["name"]["maxLength"] == 253


@pytest.mark.parametrize(
    "value", ["apps/shop/db", "a", "a/.hidden", "a/...", "a/..b", "kv-2/x_y", "team a/x"]
)
def test_vault_path_accepts(spec: Schema, value: str) -> None:
    assert matches(spec["properties"]["path"], value)
    assert matches(spec["properties"]["sources"]["items"]["properties"]["path"], value)


@pytest.mark.parametrize("value", ["", "/a", "a/", "a//b", "..", ".", "a/../b", "a/./b", "../a", "a/.."])
def test_vault_path_rejects(spec: Schema, value: str) -> None:
    assert not matches(spec["properties"]["path"], value)
    assert not matches(spec["properties"]["sources"]["items"]["properties"]["path"], value)


@pytest.mark.parametrize(
    ("value", "ok"), [("secret", True), ("teams/kv", True), ("/secret", False), ("kv/", False)]
)
def test_mount_pattern(spec: Schema, value: str, ok: bool) -> None:
    assert matches(spec["properties"]["mount"], value) is ok
    assert matches(spec["properties"]["auth"]["properties"]["mount"], value) is ok
    assert matches(spec["properties"]["auth"]["properties"]["vaultNamespace"], value) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [("password", True), ("tls.crt", True), ("a-b_c", True), ("a b", False), ("a/b", False)]
)
def test_key_pattern(spec: Schema, value: str, ok: bool) -> None:
    assert matches(spec["properties"]["keys"]["items"], value) is ok
    assert matches(spec["properties"]["decodeBase64Keys"]["items"], value) is ok


def test_secret_mac_pattern(status: Schema) -> None:
    field = status["properties"]["secretMAC"]
    assert matches(field, "hmac-sha256:" + "0f" * 32)
    assert not matches(field, "sha256:" + "0f" * 32)
    assert not matches(field, "hmac-sha256:" + "0F" * 32)
    assert not matches(field, "hmac-sha256:abc")


@pytest.mark.parametrize(
    ("value", "ok"), [("Ready", True), ("VaultUnavailable", True), ("", True), ("Not ready", False)]
)
def test_condition_reason_pattern(status: Schema, value: str, ok: bool) -> None:
    assert matches(status["properties"]["conditions"]["items"]["properties"]["reason"], value) is ok


# ------------------------------------------------------ issue 10: no spec reaches another Vault endpoint

HOSTILE_PATHS = [
    "%2e%2e/auth/token/lookup-self",
    "x/%2e%2e/%2e%2e/%2e%2e/auth/token/lookup-self",
    "x/%2E%2E/sys",
    "a%2fb",
    "x\\..\\..\\auth",
    "lookup-self?x=1",
    "a#/../../sys",
    "a/\x00/b",
    "a\tb",
    "a\x7fb",
    "a\x85b",
    "a\r\nX-Vault-Token: x",
]
SYSTEM_MOUNTS = ["sys", "SYS", "Sys/mounts", "auth", "auth/token", "AUTH/Token", "identity", "IdEnTiTy/x"]
SYSTEM_MOUNTS += ["cubbyhole", "CubbyHole/x"]
MOUNT_FIELDS = ("mount", "sources[].mount")


def _field(spec: Schema, name: str) -> Schema:
    if name.startswith("sources[]."):
        node: Schema = spec["properties"]["sources"]["items"]["properties"][name.removeprefix("sources[].")]
        return node
    if name.startswith("auth."):
        node = spec["properties"]["auth"]["properties"][name.removeprefix("auth.")]
        return node
    node = spec["properties"][name]
    return node


def go_search(pattern: str, value: str) -> bool:
    """RE2's search: `$` is the end of the text (Python's `$` also matches before a final newline)."""
    return re.search(pattern.replace("$", r"\Z"), value) is not None


def crd_accepts(node: Schema, value: str) -> bool:
    """What the API server decides for one string field: length, pattern and `not: {pattern}`."""
    if not node.get("minLength", 0) <= len(value) <= node.get("maxLength", 10**9):
        return False
    if "pattern" in node and not go_search(node["pattern"], value):
        return False
    denied = (node.get("not") or {}).get("pattern")
    return not (denied and go_search(denied, value))


@pytest.mark.parametrize("value", HOSTILE_PATHS)
@pytest.mark.parametrize(
    "name", ["path", "sources[].path", "mount", "sources[].mount", "auth.mount", "auth.vaultNamespace"]
)
def test_hostile_paths_are_refused_at_apply_time(spec: Schema, name: str, value: str) -> None:
    assert not crd_accepts(_field(spec, name), value)


@pytest.mark.parametrize("value", SYSTEM_MOUNTS)
@pytest.mark.parametrize("name", MOUNT_FIELDS)
def test_system_mounts_are_refused_at_apply_time(spec: Schema, name: str, value: str) -> None:
    node = _field(spec, name)
    assert matches(node, value)  # a well-formed path ...
    assert not crd_accepts(node, value)  # ... refused by the deny-list


@pytest.mark.parametrize("value", ["secret", "system", "authx", "my/sys", "kv/auth", "cubby", "team/kv"])
@pytest.mark.parametrize("name", MOUNT_FIELDS)
def test_ordinary_mounts_are_accepted(spec: Schema, name: str, value: str) -> None:
    assert crd_accepts(_field(spec, name), value)


@pytest.mark.parametrize("name", ["auth.role", "auth.audience", "auth.vaultNamespace"])
@pytest.mark.parametrize("value", ["team\r\nX-Vault-Token: s.x", "a\x00b", "a\tb", "a\x7f", "a\x85b"])
def test_header_fields_refuse_control_characters(spec: Schema, name: str, value: str) -> None:
    assert not crd_accepts(_field(spec, name), value)


@pytest.mark.parametrize("name", ["auth.role", "auth.audience"])
def test_header_fields_accept_plain_text(spec: Schema, name: str) -> None:
    assert crd_accepts(_field(spec, name), "shop reader ä/€")


_ALPHABET = st.sampled_from(["a", "Z", "/", ".", "%", "?", "#", "\\", " ", "\x00", "\n", "\x7f", "\x85", "ä"])
_TEXT = st.lists(_ALPHABET, max_size=12).map("".join) | st.sampled_from(SYSTEM_MOUNTS + HOSTILE_PATHS)


@settings(max_examples=400, deadline=None)
@given(value=_TEXT)
def test_the_crd_and_the_parser_agree_on_paths_and_mounts(spec: Schema, value: str) -> None:
    """The schema refuses at apply time exactly what the operator refuses as InvalidSpec."""

    def parser_accepts(fields: dict[str, Any]) -> bool:
        try:
            parse_spec(fields, name="x", default_mount="secret")
        except SyncError:
            return False
        return True

    assert crd_accepts(_field(spec, "path"), value) == parser_accepts({"path": value})
    assert crd_accepts(_field(spec, "mount"), value) == parser_accepts({"path": "a", "mount": value})
    assert crd_accepts(_field(spec, "sources[].mount"), value) == parser_accepts(
        {"sources": [{"path": "a", "mount": value}]}
    )
    assert crd_accepts(_field(spec, "auth.mount"), value) == parser_accepts(
        {"path": "a", "auth": {"mount": value}}
    )


# ----------------------------------------------------- issue 11: one declaration, the CRD generated from it


def test_the_generated_files_are_what_the_declarations_give() -> None:
    """crds/, the chart's copy and docs/api.md's field tables are generated from vaultsync.api: an edit by
    hand (or a declaration changed without regenerating) fails here."""
    stale = [
        str(path)
        for path, text in expected_files(REPO_ROOT).items()
        if not (REPO_ROOT / path).exists() or (REPO_ROOT / path).read_text() != text
    ]
    assert stale == [], "run `python -m vaultsync.api.generate` (in operator/ or with the package installed)"


def test_the_crd_file_loads_to_the_declared_crd() -> None:
    for kind in KINDS:
        assert yaml.safe_load((REPO_ROOT / "crds" / kind.crd_file).read_text()) == declared_crd(kind)


def test_the_generator_check_mode_names_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "api.md").write_text((REPO_ROOT / "docs" / "api.md").read_text())
    assert generate_main(["--root", str(tmp_path), "--check"]) == 1
    assert "crds/vaultsecrets.yaml" in capsys.readouterr().err
    assert generate_main(["--root", str(tmp_path)]) == 0
    assert generate_main(["--root", str(tmp_path), "--check"]) == 0
    assert (tmp_path / "crds" / "vaultsecrets.yaml").read_bytes() == CRD_FILE.read_bytes()


def test_the_docs_page_needs_its_markers() -> None:
    with pytest.raises(ValueError, match="BEGIN GENERATED VaultSecret spec fields"):
        render_docs(VAULT_SECRET, "# no tables here\n")


def _declared_fields(f: Field) -> Iterator[Field]:
    yield f
    for sub in (*f.properties.values(), f.items, f.values):
        if sub is not None:
            yield from _declared_fields(sub)


def test_every_check_a_field_names_is_implemented_and_used() -> None:
    named = {
        name
        for kind in KINDS
        for f in _declared_fields(kind.root)
        for name in (*f.checks, *f.key_checks, *f.object_checks)
    }
    assert named == set(CHECKS)
    assert named >= EXACT_CHECKS


def test_checks_hold_only_value_validations_of_their_field_type() -> None:
    """A field's checks run on values of its JSON type; key checks only where there are map values."""
    for kind in KINDS:
        for f in _declared_fields(kind.root):
            if f.key_checks:
                assert f.values is not None
            if f.checks:
                assert f.type in ("string", "int-or-string"), f


# The CRD's schema and the parser agree, field by field: a value the schema refuses is refused by the parser
# with a message naming the field; one it accepts is accepted, unless a check of the field refuses more than
# its schema does (a DNS name with an empty label, a blank role, ...: not in EXACT_CHECKS).

# (path in the CRD, where the value goes in a spec, the field the parser names)
_STRING_FIELDS: list[tuple[str, str]] = [
    ("path", "spec.path"),
    ("mount", "spec.mount"),
    ("kv", "spec.kv"),
    ("sources[].path", "spec.sources[0].path"),
    ("sources[].mount", "spec.sources[0].mount"),
    ("sources[].kv", "spec.sources[0].kv"),
    ("keys[]", "spec.keys[0]"),
    ("decodeBase64Keys[]", "spec.decodeBase64Keys[0]"),
    ("templates{}", "spec.templates.k"),
    ("type", "spec.type"),
    ("target.name", "spec.target.name"),
    ("target.labels{}", "spec.target.labels.k"),
    ("target.annotations{}", "spec.target.annotations.k"),
    ("target.creationPolicy", "spec.target.creationPolicy"),
    ("auth.serviceAccountName", "spec.auth.serviceAccountName"),
    ("auth.role", "spec.auth.role"),
    ("auth.method", "spec.auth.method"),
    ("auth.mount", "spec.auth.mount"),
    ("auth.audience", "spec.auth.audience"),
    ("auth.vaultNamespace", "spec.auth.vaultNamespace"),
    ("rolloutRestartTargets[].kind", "spec.rolloutRestartTargets[0].kind"),
    ("rolloutRestartTargets[].name", "spec.rolloutRestartTargets[0].name"),
    ("refreshInterval", "spec.refreshInterval"),
]


def _node(spec: Schema, crd_path: str) -> Schema:
    node = spec
    for part in re.findall(r"[A-Za-z0-9]+|\[\]|\{\}", crd_path):
        node = (
            node["items"]
            if part == "[]"
            else node["additionalProperties"]
            if part == "{}"
            else node["properties"][part]
        )
    return node


def _declared(crd_path: str) -> Field:
    f = VAULT_SECRET.spec
    for part in re.findall(r"[A-Za-z0-9]+|\[\]|\{\}", crd_path):
        sub = f.items if part == "[]" else f.values if part == "{}" else f.properties[part]
        assert sub is not None
        f = sub
    return f


def _place(field_path: str, value: Any) -> dict[str, Any]:
    """A spec that is valid except, perhaps, for `value` at `field_path`."""
    spec: dict[str, Any] = {"path": "a"}
    parts = field_path.removeprefix("spec.").replace("[0]", ".0").split(".")
    if parts[0] == "sources":
        del spec["path"]
        spec["sources"] = [{"path": "a", parts[2]: value}]
    elif parts[0] == "rolloutRestartTargets":
        spec["rolloutRestartTargets"] = [{"kind": "Deployment", "name": "web", parts[2]: value}]
    elif parts[0] in ("keys", "decodeBase64Keys"):
        spec[parts[0]] = [value]
    elif len(parts) == 3:
        spec[parts[0]] = {parts[1]: {parts[2]: value}}
    elif len(parts) == 2:
        spec[parts[0]] = {parts[1]: value}
    else:
        spec[parts[0]] = value
    return spec


def _crd_accepts_value(node: Schema, value: Any) -> bool:
    if isinstance(value, int):
        return node.get("x-kubernetes-int-or-string") is True and node["minimum"] <= value <= node["maximum"]
    if "enum" in node and value not in node["enum"]:
        return False
    if value in (node.get("not") or {}).get("enum", ()):
        return False
    return crd_accepts(node, value)


def _parser_verdict(field_path: str, value: Any) -> str | None:
    """None if the parser accepts, else its message."""
    try:
        parse_spec(_place(field_path, value), name="x", default_mount="secret")
    except SyncError as exc:
        return exc.message
    return None


_CHARS = st.sampled_from(
    [
        "a",
        "Z",
        "0",
        "-",
        "_",
        ".",
        "/",
        " ",
        "%",
        "?",
        "#",
        "\\",
        "\x00",
        "\n",
        "\t",
        "\x7f",
        "\x85",
        "ä",
        "h",
        "m",
        "s",
    ]
)
_HOSTILE = st.sampled_from([*HOSTILE_PATHS, *SYSTEM_MOUNTS, ".", "..", "", " ", "a..b", "a\n", "1d", "500ms"])


def _values(node: Schema) -> st.SearchStrategy[Any]:
    samples: list[st.SearchStrategy[Any]] = [st.lists(_CHARS, max_size=10).map("".join), _HOSTILE]
    if "enum" in node:
        samples.append(st.sampled_from(node["enum"]))
        samples.append(st.sampled_from([str(v).lower() for v in node["enum"]]))
    if "pattern" in node:
        samples.append(
            st.from_regex(re.compile(node["pattern"]), fullmatch=False).filter(lambda s: len(s) < 300)
        )
    if "maxLength" in node:
        limit = node["maxLength"]
        samples.append(st.sampled_from(["x" * limit, "x" * (limit + 1)]))
    if node.get("x-kubernetes-int-or-string"):
        samples.append(st.integers(-2, 400))
    return st.one_of(samples)


@pytest.mark.parametrize(("crd_path", "field_path"), _STRING_FIELDS)
def test_the_crd_and_the_parser_agree_field_by_field(spec: Schema, crd_path: str, field_path: str) -> None:
    node = _node(spec, crd_path)
    exact = set(_declared(crd_path).checks) <= EXACT_CHECKS

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(value=_values(node))
    def agree(value: Any) -> None:
        verdict = _parser_verdict(field_path, value)
        if not _crd_accepts_value(node, value):
            assert verdict is not None, (field_path, value)
            assert field_path in verdict, (field_path, verdict)
            assert "\n" not in verdict and "\x00" not in verdict
        elif exact:
            assert verdict is None, (field_path, value, verdict)

    agree()


def test_every_string_field_of_the_spec_is_covered_by_the_agreement_test(spec: Schema) -> None:
    leaves = {
        path.removeprefix("spec.")
        for path, node in walk(spec, "spec")
        if node.get("type") == "string" or node.get("x-kubernetes-int-or-string")
    }
    assert leaves == {crd_path.replace("{}", "{}") for crd_path, _ in _STRING_FIELDS}
