"""VaultSecret: one KV secret (or several, merged) synced into a Secret. Its fields, declared once."""

from __future__ import annotations

from typing import Final, Literal

from . import common
from .common import MAX_PATH_LENGTH, kv_mount, vault_path
from .schema import Field, Kind, PrinterColumn, array, integer, obj, string

KvVersion = Literal["v1", "v2"]
KV_VERSIONS: Final[tuple[KvVersion, ...]] = ("v1", "v2")
MAX_SOURCES: Final = 16
"""At most this many ``spec.sources`` (the CRD's ``maxItems``)."""

_KIND = "VaultSecret"
_NOT_KV = "{field} {value} is not a KV engine version: use v1 or v2"
_KV_MESSAGES = {"type": _NOT_KV, "enum": _NOT_KV}
_VERSION_MESSAGES = {
    "type": "{field} {value} must be an integer >= 1 (the KV v2 version to pin)",
    "minimum": "{field} is {raw}: KV versions start at 1; remove it to read the latest version",
}
_PATH_EXAMPLE = "apps/shop/db"


def _version(description: str) -> Field:
    return integer(description, format="int64", minimum=1, messages=_VERSION_MESSAGES)


def _path(description: str, *, required: bool = False) -> Field:
    return vault_path(
        description,
        what="path",
        example=_PATH_EXAMPLE,
        max_length=MAX_PATH_LENGTH,
        messages={
            "required": "{field} is missing: set the path of the secret inside the mount, e.g. apps/shop/db"
        },
    ).with_(required=required)


_SOURCE = obj(
    "One Vault secret to read. version is only valid with kv v2 (else the API server says "
    "'\"spec.sources\" must not validate the schema (not)').",
    {
        "path": _path(
            "Path of the secret inside the mount, e.g. apps/shop/db; the rules of spec.path. Required.",
            required=True,
        ),
        "mount": kv_mount(
            "Path of the KV secrets engine mount, e.g. secret; the rules of spec.mount. Default: spec.mount, "
            "else the operator setting VAULTSYNC_DEFAULT_MOUNT (itself defaulting to secret)."
        ),
        # No default here: an unset kv inherits spec.kv.
        "kv": string(
            "Version of the KV secrets engine at the mount, v1 or v2. Default: spec.kv (itself v2).",
            enum=KV_VERSIONS,
            messages=_KV_MESSAGES,
        ),
        "version": _version(
            "KV v2 version to read, e.g. 3. Default: the latest version. Only valid with kv v2 (a version "
            "with an explicit kv: v1 is rejected here; with a kv: v1 inherited from spec.kv the operator "
            "reports InvalidSpec)."
        ),
    },
    # A pinned version exists only in KV v2.
    rules={"not": {"required": ["version", "kv"], "properties": {"kv": {"enum": ["v1"]}}}},
    messages={"type": "{field} must be an object like {{path: apps/shop/db}}, not {type}"},
)

_TEMPLATES_ONLY_TRUE = {"properties": {"templatesOnly": {"enum": [True]}}}

SPEC: Final = obj(
    "What to read from Vault and how to write it. Give either path (one secret) or sources (several "
    'secrets merged into one Secret). Rules across fields, which the API server reports as \'"spec" '
    "must not validate the schema (not)': path and sources are not both set; version is set only with "
    "path and kv v2; templatesOnly true needs templates and excludes keys and decodeBase64Keys.",
    {
        "path": _path(
            "Path of the secret inside the mount, without the mount and without KV v2's data/ segment, e.g. "
            "apps/shop/db. No leading or trailing slash, no empty, \".\" or \"..\" segments, no '%', '\\', "
            "'?', '#' or control characters (write the path plainly: the operator percent-encodes every "
            "segment). Required unless sources is given; not allowed together with sources."
        ),
        "mount": kv_mount(
            "Path of the KV secrets engine mount, without leading or trailing slash, e.g. secret or "
            "teams/kv; the same rules as path, and not Vault's own sys, auth, identity or cubbyhole (nor "
            "under them: the API server says 'must not validate the schema (not)'). The operator checks "
            "with Vault that it is a KV mount of the version kv states before the first read. With sources, "
            "the mount of each source that sets none. Default: the operator setting VAULTSYNC_DEFAULT_MOUNT "
            "(itself defaulting to secret)."
        ),
        "kv": string(
            "Version of the KV secrets engine at the mount: v1 or v2. With sources, the kv of each source "
            "that sets none. Default v2.",
            enum=KV_VERSIONS,
            default="v2",
            messages=_KV_MESSAGES,
        ),
        "version": _version(
            "KV v2 version to read, e.g. 3; pins the Secret to that version. Default: the latest version. "
            "Only valid with path and kv v2 (with sources, set version on the source)."
        ),
        "sources": array(
            "Several Vault secrets merged into one Secret (fan-in), read in order. A key that two sources "
            "both give is an error (Ready=False, reason KeyConflict), never a silent override. List each "
            "secret once. Not allowed together with path. Example: [{path: apps/shop/db}, {path: "
            "shared/smtp, mount: common, kv: v1}].",
            _SOURCE,
            min_items=1,
            max_items=MAX_SOURCES,
            messages={
                "minItems": "{field} is empty: list at least one {{path}} or use spec.path",
                "maxItems": (
                    "{field} has {n} entries; at most {limit} are allowed: split them over several "
                    "VaultSecrets"
                ),
            },
        ),
        "keys": common.keys(_KIND),
        "templates": common.templates(_KIND),
        "templatesOnly": common.templates_only(),
        "type": common.secret_type(),
        "decodeBase64Keys": common.secret_key_list(
            "Vault keys whose values are base64 text of binary content (Java keystores, Kerberos keytabs, "
            "...): they are written into the Secret as the decoded raw bytes instead of as the text. A value "
            "that is not valid base64 is reported (Ready=False). Each must be a copied Vault key (listed in "
            "keys, when keys is set) and not also a templates key; not with templatesOnly (use the b64decode "
            "template filter there). Default: none. Example: [keystore.jks].",
            "A Vault key name, e.g. keystore.jks; it must also be a key the Secret gets.",
            empty="{field} is empty: list the keys to decode, or remove {field}",
        ),
        "target": common.target(_KIND),
        "refreshInterval": common.refresh_interval(
            "1h",
            "How often Vault is read again (a string, or the number 0): a Go-style duration made of "
            "hours (h), minutes (m) and seconds (s), e.g. 30s, 5m, 1h, 1h30m, 1.5h. 0 (or 0s) syncs once "
            "and then only on a spec change or a new value of the vaultsync.io/refresh annotation. No days "
            "(write 24h) and no ms. Refreshes are spread with jitter. Default 1h.",
        ),
        "auth": common.auth(_KIND),
        "rolloutRestartTargets": common.rollout_restart_targets(),
    },
    rules={
        # path or sources is required.
        "anyOf": [{"required": ["path"]}, {"required": ["sources"]}],
        # Combinations that are rejected (the parser reports the same ones, with a clearer message, if
        # they get past an older CRD).
        "not": {
            "anyOf": [
                {"required": ["path", "sources"]},
                # A pinned version exists only in KV v2 (kv is always set: it defaults to v2).
                {"required": ["version", "kv"], "properties": {"kv": {"enum": ["v1"]}}},
                # With sources, each source pins its own version.
                {"required": ["version", "sources"]},
                # templatesOnly: true copies no Vault key, so keys and decodeBase64Keys would do nothing,
                # and without templates the Secret would be empty.
                {"required": ["templatesOnly", "keys"], **_TEMPLATES_ONLY_TRUE},
                {"required": ["templatesOnly", "decodeBase64Keys"], **_TEMPLATES_ONLY_TRUE},
                {"required": ["templatesOnly"], **_TEMPLATES_ONLY_TRUE, "not": {"required": ["templates"]}},
            ]
        },
    },
)

STATUS: Final = obj(
    "What the operator observed at the last sync. Written by the operator only (status subresource).",
    {
        "conditions": common.conditions(
            _KIND,
            "VaultUnavailable, AuthFailed, PermissionDenied, NotFound, TemplateError, KeyConflict, "
            "TargetConflict, InvalidSpec",
        ),
        "observedGeneration": common.generation(
            "metadata.generation of the spec that the last sync attempt used."
        ),
        "secretName": string("Name of the Secret written, e.g. shop-db."),
        "lastSyncTime": string(
            "When the Secret's data last changed (RFC 3339). A refresh that finds nothing changed does not "
            "move it.",
            format="date-time",
        ),
        "vaultVersion": obj(
            "KV v2 version read at the last sync, per source: key <mount>/<path>, e.g. "
            '{"secret/apps/shop/db": 4}. KV v1 sources have no version and no entry.',
            values=integer("The KV v2 version read.", format="int64"),
        ),
        "secretMAC": common.secret_mac(_KIND),
        "kopf": common.kopf_bookkeeping(),
    },
)

VAULT_SECRET: Final = Kind(
    kind=_KIND,
    plural="vaultsecrets",
    singular="vaultsecret",
    short_names=("vsec",),
    scope="Namespaced",
    description=(
        "VaultSecret keeps a Kubernetes Secret in sync with a secret stored in HashiCorp Vault or OpenBao "
        "(KV v1 or v2). The operator reads the secret with a Vault identity of this namespace, writes it "
        "into the Secret named by spec.target.name (default: this object's name), reads it again every "
        "spec.refreshInterval, and repairs hand edits of the Secret at once. Kubernetes acts as a cache: "
        "when Vault is unavailable the existing Secret is kept unchanged and the failure shows in the Ready "
        "condition. Example: spec: {path: apps/shop/db, refreshInterval: 5m}."
    ),
    spec=SPEC,
    status=STATUS,
    printer_columns=(
        PrinterColumn(
            name="READY",
            type="string",
            description="Status of the Ready condition (True, False or Unknown).",
            json_path='.status.conditions[?(@.type=="Ready")].status',
        ),
        PrinterColumn(
            name="REASON",
            type="string",
            description="Reason of the Ready condition, e.g. VaultUnavailable or PermissionDenied.",
            json_path='.status.conditions[?(@.type=="Ready")].reason',
        ),
        PrinterColumn(
            name="SECRET",
            type="string",
            description="Name of the Secret written.",
            json_path=".status.secretName",
        ),
        PrinterColumn(
            name="LAST SYNC",
            type="date",
            description="When the Secret's data last changed.",
            json_path=".status.lastSyncTime",
        ),
        PrinterColumn(name="AGE", type="date", json_path=".metadata.creationTimestamp"),
    ),
    header=(
        "VaultSecret: syncs one HashiCorp Vault / OpenBao KV secret (or several, merged) into a native "
        "Kubernetes\nSecret. The field names and meanings are the product contract; `kubectl explain "
        "vaultsecret.spec` shows the\ndescriptions below.\n\n"
        "Written for Kubernetes >= 1.20: plain structural OpenAPI v3 (no x-kubernetes-validations / CEL). "
        "Rules a\nschema can express are enforced here, at apply time; the rest (template syntax, the keys "
        "a Secret type\nneeds, templates' Secret-key names) is checked by the operator and reported as "
        "Ready=False/InvalidSpec."
    ),
)
