"""Pieces shared by the kinds: the patterns, bounds and fields that every kind writing a Secret has.

``VaultSecret`` uses all of them; the coming kinds (VaultDynamicSecret, VaultPKISecret) share
``target``, ``templates``, ``templatesOnly``, ``keys``, ``type``, ``auth``, ``rolloutRestartTargets``,
the ``Ready`` condition and ``secretMAC`` with it (see the product contract), so each is a function
of the kind's name (descriptions say "this VaultDynamicSecret", not "this VaultSecret").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from .schema import Field, array, boolean, integer, obj, string

# ------------------------------------------------------------------------------------ enumerations

CreationPolicy = Literal["Owner", "Orphan", "Merge"]
RolloutKind = Literal["Deployment", "StatefulSet", "DaemonSet"]
AuthMethod = Literal["kubernetes", "jwt"]

CREATION_POLICIES: Final[tuple[CreationPolicy, ...]] = ("Owner", "Orphan", "Merge")
ROLLOUT_KINDS: Final[tuple[RolloutKind, ...]] = ("Deployment", "StatefulSet", "DaemonSet")
AUTH_METHODS: Final[tuple[AuthMethod, ...]] = ("kubernetes", "jwt")
SERVICE_ACCOUNT_TOKEN_TYPE: Final = "kubernetes.io/service-account-token"  # noqa: S105

# ---------------------------------------------------------------------------------------- bounds

MAX_PATH_LENGTH: Final = 1024
MAX_MOUNT_LENGTH: Final = 512
MAX_HEADER_LENGTH: Final = 512
"""Fields sent in HTTP headers or login bodies (role, audience)."""
MAX_TEMPLATES: Final = 64
"""Most entries in spec.templates (the CRD's maxProperties)."""
MAX_TEMPLATE_LENGTH: Final = 64 * 1024
"""Longest template source, in characters (the CRD's maxLength): compiling costs about 8 ms per KiB."""
MAX_TEMPLATES_LENGTH: Final = 256 * 1024
"""Longest total of all template sources of one object (the parser only: a schema cannot add up)."""
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024
RESERVED_METADATA_PREFIX: Final = "vaultsync.io"
"""Label and annotation keys under this prefix (and its subdomains) belong to the operator."""
SYSTEM_MOUNTS: Final = ("sys", "auth", "identity", "cubbyhole")
"""Vault's own mounts: never a KV mount of a spec, nor anything under them (compared case-insensitively)."""
PATH_FORBIDDEN: Final = frozenset("%\\?#")
"""Characters no Vault path of a spec may hold (besides control characters)."""

# -------------------------------------------------------------------------------------- patterns
# Written for RE2 (the API server) and read by Python's `re` too: no look-arounds, no back-references.

_CONTROL = r"\x00-\x1f\x7f-\x9f"
"""C0, DEL and C1 control characters: what Python's unicodedata calls category Cc."""
_NOT_SPECIAL = rf"%\\?#{_CONTROL}"
_SEGMENT = (
    rf"([^/.{_NOT_SPECIAL}][^/{_NOT_SPECIAL}]*"
    rf"|\.[^/.{_NOT_SPECIAL}][^/{_NOT_SPECIAL}]*"
    rf"|\.\.[^/{_NOT_SPECIAL}]+)"
)
VAULT_PATH_PATTERN: Final = rf"^{_SEGMENT}(/{_SEGMENT})*$"
"""Segments separated by single slashes; no leading or trailing slash; no empty, "." or ".." segment;
no '%', '\\', '?', '#' or control characters (the operator percent-encodes every segment, so nothing in
a path can reach another Vault endpoint)."""
SYSTEM_MOUNT_PATTERN: Final = (
    "^(" + "|".join("".join(f"[{c}{c.upper()}]" for c in m) for m in SYSTEM_MOUNTS) + ")(/|$)"
)
"""Vault's own mounts, in any case, and paths under them."""
NO_CONTROL_PATTERN: Final = rf"^[^{_CONTROL}]*$"
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""What a schema can say of a DNS subdomain; the parser also refuses empty labels ("a..b")."""
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"  # noqa: S105
DURATION_PATTERN: Final = r"^(0|([0-9]+(\.[0-9]+)?[hms])+)$"
CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$"
SECRET_MAC_PATTERN: Final = r"^hmac-sha256:[0-9a-f]{64}$"  # noqa: S105

# ------------------------------------------------------------------------------- field builders


def vault_path(
    description: str,
    *,
    what: str,
    example: str,
    max_length: int,
    not_pattern: str | None = None,
    checks: tuple[str, ...] = (),
    messages: Mapping[str, str] | None = None,
) -> Field:
    """A path sent to Vault (a secret's path, a mount, a Vault namespace): refused at apply time when
    it could reach another endpoint, and by the ``vault_path`` check with a message that says why."""
    hint = " (the mount goes in the mount field, not in the path)" if what == "path" else ""
    default_messages = {
        "type": f"{{field}} must be a string like {example!r}, not {{type}}",
        "minLength": f"{{field}} is empty: set the {what}, e.g. {example!r}",
        "slash": f"{{field}} {{value}} must not start or end with '/': write it like {example!r}{hint}",
        "char": (
            f"{{field}} {{value}} contains {{found}}: a Vault {what} here may not hold '%', '\\', '?', '#' "
            f"or control characters; write it plainly like {example!r} (the operator percent-encodes "
            "every segment itself)"
        ),
        "segment": f"{{field}} {{value}} has an empty, '.' or '..' segment: write it like {example!r}",
    }
    return string(
        description,
        min_length=1,
        max_length=max_length,
        pattern=VAULT_PATH_PATTERN,
        not_pattern=not_pattern,
        checks=("vault_path", *checks),
        messages={**default_messages, **(messages or {})},
    )


def kv_mount(description: str) -> Field:
    """A KV secrets engine mount: a Vault path that is not one of Vault's own mounts nor under them."""
    return vault_path(
        description,
        what="mount",
        example="secret",
        max_length=MAX_MOUNT_LENGTH,
        not_pattern=SYSTEM_MOUNT_PATTERN,
        checks=("kv_mount",),
        messages={
            "system": (
                "{field} {value} is (or is under) Vault's own {top} mount, which a VaultSecret may not "
                "read: set it to the KV secrets engine mount, e.g. 'secret'"
            )
        },
    )


def dns_name(description: str, *, what: str, required: bool = False, missing: str | None = None) -> Field:
    """A Kubernetes object name (DNS subdomain). ``what`` may use ``{parent[...]}``."""
    refused = (
        f"{{field}} {{value}} is not a valid {what}: use at most 253 lowercase letters, digits, "
        "'-' and '.', starting and ending with a letter or digit"
    )
    return string(
        description,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        checks=("dns_subdomain",),
        messages={
            "type": f"{{field}} must be a string (the {what}), not {{type}}",
            "minLength": refused,
            "maxLength": refused,
            "pattern": refused,
            "dns_subdomain": refused,
            **({"required": missing} if missing else {}),
        },
        required=required,
    )


_NOT_A_SECRET_KEY = (
    "{field} {value} cannot be a Secret key: use 1-253 letters, digits, '-', '_' or '.' (not '.' or '..')"  # noqa: S105
)


def secret_key(description: str) -> Field:
    """A name that becomes a Secret key: what Kubernetes allows, checked in the schema where it can."""
    return string(
        description,
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        # "." and ".." match the pattern but are not valid Secret keys.
        not_enum=(".", ".."),
        checks=("secret_key",),
        messages={
            "type": "{field} must be a string, not {type}",
            **dict.fromkeys(("minLength", "maxLength", "pattern", "not", "secret_key"), _NOT_A_SECRET_KEY),
        },
    )


def secret_key_list(description: str, item_description: str, *, empty: str) -> Field:
    return array(
        description,
        secret_key(item_description),
        min_items=1,
        # The API server refuses duplicates; the parser keeps the first of each.
        list_type="set",
        messages={"minItems": empty},
    )


_EMPTY_OVERRIDE = "{field} is empty: remove it to use the operator's default, or set a value"
_STRING = "{field} must be a string, not {type} ({value})"


def header_value(description: str) -> Field:
    """A string sent in an HTTP header or a login body: no control characters, not blank."""
    return string(
        description,
        min_length=1,
        max_length=MAX_HEADER_LENGTH,
        pattern=NO_CONTROL_PATTERN,
        checks=("not_blank",),
        messages={
            **dict.fromkeys(("minLength", "not_blank"), _EMPTY_OVERRIDE),
            "pattern": "{field} {value} contains control characters: remove them",
        },
    )


# ----------------------------------------------------------------------------------- shared fields


def keys(kind: str) -> Field:
    return secret_key_list(
        "Only these Vault keys are copied into the Secret, e.g. [username, password]. Default: all keys. "
        "A listed key that Vault does not have is reported (Ready=False). Templates still see every key. "
        "Not with templatesOnly.",
        'A Vault key name; also its Secret key, so only [-._a-zA-Z0-9] characters (not "." or "..").',
        empty="{field} is empty: list the keys to copy, or remove {field} to copy every key",
    )


def templates(kind: str) -> Field:
    return obj(
        "Extra Secret keys rendered from Jinja2 templates (sandboxed, undefined variables are errors): "
        "map of Secret key to template. Variables: every Vault key by name, secret (dict of all keys), "
        f"metadata (Vault metadata: version, created_time), namespace and name (of this {kind}). "
        "Secret keys may only use [-._a-zA-Z0-9]. Default: none. Example: "
        '{url: "postgres://{{ username }}:{{ password }}@db:5432/shop"}. '
        f"At most {MAX_TEMPLATES} templates of at most {MAX_TEMPLATE_LENGTH} characters each "
        f"({MAX_TEMPLATES_LENGTH // 1024} KiB together).",
        max_properties=MAX_TEMPLATES,
        values=string(
            "A Jinja2 template whose output is the value of this Secret key.",
            max_length=MAX_TEMPLATE_LENGTH,
            messages={
                "type": "{field} must be a string (a Jinja2 template), not {type}",
                "maxLength": (
                    "{field} is {n:,} characters long; at most {limit:,} are allowed: shorten the template"
                ),
            },
        ),
        key_checks=("secret_key",),
        object_checks=("templates_size",),
        messages={
            "type": "{field} must be an object of Secret key -> template, not {type}",
            "maxProperties": (
                "{field} has {n} entries; at most {limit} are allowed: "
                f"move some keys to another {kind}"
            ),
            "secret_key": "{field} key {value} cannot be a Secret key: use 1-253 letters, digits, "
            "'-', '_' or '.' (not '.' or '..')",
            "templates_size": (
                "{field} are more than {limit:,} characters long together: "
                f"shorten them or split the keys over several {kind}s"
            ),
        },
        docs_note="Rendering limits: [shaping.md](shaping.md#limits).",
    )


def templates_only() -> Field:
    return boolean(
        "true: the Secret holds only the keys from templates, not the Vault keys themselves; needs "
        "templates, and excludes keys and decodeBase64Keys. Default false.",
        default=False,
    )


def secret_type(default: str = "Opaque") -> Field:
    not_valid = "{field} {value} is not a valid Secret type"
    return string(
        "Type of the Secret written, e.g. Opaque, kubernetes.io/tls, kubernetes.io/dockerconfigjson, "
        "kubernetes.io/basic-auth or a custom type; not kubernetes.io/service-account-token. The keys a "
        "built-in type needs (tls.crt and tls.key for kubernetes.io/tls, ...) are checked before writing. "
        f"Default {default}.",
        min_length=1,
        max_length=253,
        default=default,
        # The operator does not forge ServiceAccount tokens.
        not_enum=(SERVICE_ACCOUNT_TOKEN_TYPE,),
        checks=("not_blank", "no_control_chars"),
        messages={
            **dict.fromkeys(
                ("type", "minLength", "not_blank"),
                "{field} {value} must be a non-empty string, e.g. Opaque or kubernetes.io/tls",
            ),
            "maxLength": not_valid,
            "no_control_chars": not_valid,
            "not": (
                "{field} {raw} is refused: the operator does not forge ServiceAccount tokens; use Opaque or "
                "another type"
            ),
        },
    )


def _string_map(description: str, values: Field, *, key_check: str) -> Field:
    return obj(
        description,
        values=values,
        key_checks=(key_check,),
        messages={"type": "{field} must be an object of strings, not {type}"},
    )


_QUOTE_IT = '{field} must be a string, not {type}: quote it in YAML, e.g. "{value}"'


def target(kind: str) -> Field:
    return obj(
        f"The Secret written: its name, extra labels and annotations, and who owns it. Always in this "
        f"{kind}'s namespace.",
        {
            "name": dns_name(
                'Name of the Secret (a DNS subdomain: lower-case letters, digits, "-" and "."), e.g. '
                f"shop-db. Default: this {kind}'s metadata.name. Changing it writes the new Secret and "
                "deletes the old one if the operator created it (creationPolicy Owner).",
                what="Secret name",
            ),
            "labels": _string_map(
                "Labels added to the Secret, e.g. {app: shop}. Keys with the prefix vaultsync.io/ are "
                "reserved for the operator. Default: none.",
                string(
                    'Label value: at most 63 letters, digits, "-", "_" or ".", starting and ending with a '
                    "letter or digit, or empty.",
                    max_length=63,
                    pattern=LABEL_VALUE_PATTERN,
                    messages={
                        "type": _QUOTE_IT,
                        **dict.fromkeys(
                            ("maxLength", "pattern"),
                            "{field} value {value} is not a valid label value: use at most 63 letters, "
                            "digits, '-', '_' or '.', starting and ending with a letter or digit (or an "
                            "empty string)",
                        ),
                    },
                ),
                key_check="label_key",
            ),
            "annotations": _string_map(
                'Annotations added to the Secret, e.g. {reloader.example.com/match: "true"}. Keys with the '
                "prefix vaultsync.io/ are reserved for the operator. Default: none.",
                string("Annotation value.", messages={"type": _QUOTE_IT}),
                key_check="annotation_key",
            ).with_(
                object_checks=("annotations_size",),
                messages={
                    "type": "{field} must be an object of strings, not {type}",
                    "annotations_size": (
                        "{field} are {n:,} bytes; Kubernetes allows at most {limit:,} (256 KiB): shorten or "
                        "remove some"
                    ),
                },
            ),
            "creationPolicy": string(
                f"Owner: create the Secret with an ownerReference to this {kind}, so it is deleted with it. "
                f"Orphan: create it without one, so it is kept when this {kind} is deleted. Merge: write "
                f"only this {kind}'s keys into the Secret (creating it if absent), leaving its other keys, "
                f"type and owners alone; so whoever may create {kind}s may write keys into any Secret of the "
                "namespace, except Secrets of type kubernetes.io/service-account-token, "
                "bootstrap.kubernetes.io/token and helm.sh/release.v1 (TargetConflict). A Secret first "
                f"written by Merge stays a merge target: switching its {kind} to Owner or Orphan is "
                "Ready=False, reason TargetConflict, and the Secret is left untouched. A Secret of the "
                "target name that the operator did not create is never overwritten otherwise "
                "(TargetConflict). Default Owner.",
                enum=CREATION_POLICIES,
                default="Owner",
            ),
        },
    )


def refresh_interval(default: str, meaning: str) -> Field:
    hint = "use e.g. 30s, 5m, 1h30m or 0 (sync once)"
    no_unit = f"{{field}} {{value}} has no unit: write e.g. '{{raw}}s' or {hint}"
    return Field(
        # A string, or the number 0: YAML reads an unquoted `refreshInterval: 0` as an integer.
        type="int-or-string",
        description=meaning,
        minimum=0,
        maximum=0,
        max_length=32,
        default=default,
        pattern=DURATION_PATTERN,
        checks=("duration",),
        messages={
            "type": f"{{field}} must be a string, not {{type}}: {hint}",
            "minimum": no_unit,
            "maximum": no_unit,
            "negative": f"{{field}} {{value}} is negative: {hint}",
            "duration": f"{{field}} {{value}} is not a duration: {hint}",
            "pattern": (
                f"{{field}} {{value}} is not a duration: {hint}; the units are h, m and s (no days, no ms)"
            ),
        },
        doc_type="string or 0",
    )


def auth(kind: str) -> Field:
    return obj(
        f"How the operator logs in to Vault for this {kind}. Unset fields use the operator settings "
        "(VAULTSYNC_AUTH_*). Without serviceAccountName (the operator's own identity), role, method, mount "
        "and vaultNamespace may only repeat the operator's settings and audience may not be set: "
        "otherwise Ready=False, reason InvalidSpec, naming the field, unless the operator runs with "
        "VAULTSYNC_ALLOW_DEFAULT_IDENTITY_OVERRIDES=true.",
        {
            "serviceAccountName": dns_name(
                f"Log in as this ServiceAccount of the {kind}'s namespace, with a short-lived token from the "
                "TokenRequest API, e.g. shop-vault-reader. Default: the operator's own identity (its pod's "
                "service-account token), which an operator setting may restrict.",
                what="ServiceAccount name",
            ),
            "role": header_value(
                "Vault role to log in with, e.g. shop; no control characters. Default: the operator setting "
                "VAULTSYNC_AUTH_ROLE."
            ),
            "method": string(
                "Vault auth method: kubernetes (Vault calls the TokenReview API) or jwt (Vault checks the "
                "token's signature). Default: the operator setting VAULTSYNC_AUTH_METHOD (kubernetes).",
                enum=AUTH_METHODS,
                messages={
                    "type": _STRING,
                    "enum": "{field} {value} is not supported: use kubernetes or jwt",
                },
            ),
            "mount": vault_path(
                "Path of the auth method's mount without the auth/ prefix, e.g. kubernetes or k8s-prod; the "
                "rules of spec.path. Default: the operator setting VAULTSYNC_AUTH_MOUNT (kubernetes).",
                what="auth mount",
                example="kubernetes",
                max_length=MAX_MOUNT_LENGTH,
                messages={"type": _STRING},
            ),
            "audience": header_value(
                "Audience of the service-account token requested for serviceAccountName, e.g. vault; no "
                "control characters. Default: the operator setting VAULTSYNC_AUTH_AUDIENCE."
            ),
            "vaultNamespace": vault_path(
                "Vault Enterprise / OpenBao namespace to log in and read in, e.g. team-a or org/team-a; the "
                "rules of spec.path (no control characters). Overrides the operator setting VAULT_NAMESPACE "
                f"for this {kind}. Default: that setting (none: the root namespace).",
                what="namespace",
                example="team-a",
                max_length=MAX_MOUNT_LENGTH,
                checks=("not_blank",),
                messages={"type": _STRING, **dict.fromkeys(("minLength", "not_blank"), _EMPTY_OVERRIDE)},
            ),
        },
        docs_note="See [security.md, Identities](security.md#identities).",
    )


def rollout_restart_targets() -> Field:
    kinds = ", ".join(ROLLOUT_KINDS)
    return array(
        "Workloads of this namespace restarted (pod template annotation vaultsync.io/restartedAt) when the "
        "Secret's data changes; never on the first sync. Default: none. Example: "
        "[{kind: Deployment, name: shop}].",
        obj(
            "One workload to restart.",
            {
                "kind": string(
                    "Kind of the workload, Deployment, StatefulSet or DaemonSet. Required.",
                    required=True,
                    enum=ROLLOUT_KINDS,
                    messages={"required": f"{{field}} is missing: set it to one of {kinds}"},
                ),
                "name": dns_name(
                    "Name of the workload in this namespace, e.g. shop. Required.",
                    what="{parent[kind]} name",
                    required=True,
                    missing="{field} is missing: set the name of the {parent[kind]} to restart",
                ),
            },
            messages={"type": "{field} must be an object like {{kind: Deployment, name: web}}, not {type}"},
        ),
        # The API server refuses duplicates; the parser keeps the first of each.
        list_type="map",
        list_map_keys=("kind", "name"),
    )


# ----------------------------------------------------------------------------------- shared status


def conditions(kind: str, reasons: str) -> Field:
    return array(
        "Kubernetes-convention conditions. Ready is True when the Secret holds what Vault returned at the "
        f"last attempt; when False its reason is one of {reasons}, and its message says what to do (it "
        "never contains a secret value).",
        obj(
            "One condition.",
            {
                "type": string(
                    "Type of the condition in CamelCase, e.g. Ready.",
                    required=True,
                    min_length=1,
                    max_length=316,
                    pattern=CONDITION_TYPE_PATTERN,
                ),
                "status": string(
                    "Status of the condition, True, False or Unknown.",
                    required=True,
                    enum=("True", "False", "Unknown"),
                ),
                "reason": string(
                    "Machine-readable CamelCase reason for the last transition, e.g. VaultUnavailable or "
                    "PermissionDenied.",
                    max_length=1024,
                    pattern=CONDITION_REASON_PATTERN,
                ),
                "message": string(
                    "Human-readable details and what to do; never contains a secret value.",
                    max_length=32768,
                ),
                "lastTransitionTime": string("When the status last changed (RFC 3339).", format="date-time"),
                "observedGeneration": generation(
                    f"metadata.generation of the {kind} that the condition was set for."
                ),
            },
        ),
        list_type="map",
        list_map_keys=("type",),
    )


def generation(description: str) -> Field:
    return integer(description, format="int64", minimum=0)


def secret_mac(kind: str) -> Field:
    return string(
        "Keyed HMAC-SHA256 of the Secret's data (hmac-sha256:<64 hex digits>), used to tell whether the "
        f"Secret still holds what the operator wrote. Its key is this {kind}'s own, derived from the key in "
        "a Secret of the operator's namespace, this namespace and this object's uid, so equal values give "
        "unrelated MACs in two objects; never a plain hash of secret values.",
        pattern=SECRET_MAC_PATTERN,
    )


def kopf_bookkeeping() -> Field:
    return Field(
        type="object",
        description="Internal bookkeeping of the kopf operator framework (handler progress). Not part of the "
        "API; do not rely on it.",
        preserve_unknown=True,
        documented=False,
    )
