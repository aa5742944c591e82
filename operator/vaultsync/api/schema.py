"""The field model: one :class:`Field` per field of the API, from which the CRD schema, the parser's
per-field checks and the field tables of docs/api.md are all derived.

A :class:`Field` holds what the OpenAPI v3 schema of a CustomResourceDefinition can say about a value
(JSON type, enum, pattern, deny-lists, bounds, nested properties / items / map values, the
``x-kubernetes-*`` markers), its description, and what only the operator can say:

* ``checks``: names of semantic checks (mount and path safety, DNS names, qualified label keys, ...)
  that run in the parser where the schema cannot express the rule or where it can but its refusal
  would be an unhelpful "does not match the pattern". Their code lives with the parser
  (:data:`vaultsync.core.spec.CHECKS`); the field only names them, so that this package stays plain
  data, importable by the generator without the parser. A check marked ``exact`` in
  :data:`EXACT_CHECKS` refuses exactly what the field's schema refuses (it only words the refusal);
  the others also refuse values that the schema lets through (the tests rely on the difference).
* ``messages``: how the parser words a refusal, per constraint (``type``, ``required``, ``enum``,
  ``minLength`` ...) or per check message key. Templates are ``str.format`` strings with
  ``{field}`` (the field's path, e.g. ``spec.sources[1].mount``), ``{value}`` (a short repr of the
  value; spec values are not secrets), ``{raw}`` (the value as text), ``{type}`` ("a string", "a
  list", ...), ``{n}`` (the length or count found), ``{limit}`` (the bound), ``{choices}`` and
  ``{parent}`` (the object holding the field). Every message names the field and says what to do.
* ``docs_note`` and ``doc_type``: additions to the generated tables of docs/api.md only.

Rules across fields (path xor sources, version only with KV v2, ...) are written as raw schema
junctors in ``rules`` (the CRD side) and as code in the parser (which gives the clearer message):
they do not belong to one field.

Why a small hand-written model rather than pydantic or JSON Schema as the source: the CRD must stay
a Kubernetes 1.20 structural schema (no CEL, junctors holding value validations only), the
parser's messages are part of the product, and a kind is then a short declarative module that
reuses shared pieces (``vaultsync.api.common``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

__all__ = [
    "EXACT_CHECKS",
    "NO_DEFAULT",
    "Field",
    "JsonType",
    "Kind",
    "PrinterColumn",
    "array",
    "boolean",
    "integer",
    "obj",
    "openapi",
    "string",
]

JsonType = Literal["string", "integer", "boolean", "object", "array", "int-or-string"]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final = _NoDefault()
"""The ``default`` of a field that has none (``None`` would be ambiguous with a ``null`` default)."""

EXACT_CHECKS: Final = frozenset({"vault_path", "kv_mount", "secret_key", "duration"})
"""Checks that refuse exactly what their field's schema refuses; they exist for the wording only."""


@dataclass(frozen=True, kw_only=True)
class Field:
    """One field of the API. See the module docstring for what each part feeds."""

    type: JsonType
    description: str = ""
    required: bool = False
    default: Any = NO_DEFAULT
    enum: tuple[Any, ...] | None = None
    not_enum: tuple[Any, ...] | None = None
    pattern: str | None = None
    not_pattern: str | None = None
    format: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    max_properties: int | None = None
    properties: Mapping[str, Field] = field(default_factory=dict)
    items: Field | None = None
    values: Field | None = None
    """The schema of a map's values (``additionalProperties``)."""
    list_type: Literal["set", "map"] | None = None
    list_map_keys: tuple[str, ...] = ()
    preserve_unknown: bool = False
    rules: Mapping[str, Any] | None = None
    """Raw schema junctors (``anyOf``, ``not``) across this object's properties; the CRD side only."""
    checks: tuple[str, ...] = ()
    key_checks: tuple[str, ...] = ()
    """Checks of a map's keys (the schema of Kubernetes 1.20 cannot check them)."""
    object_checks: tuple[str, ...] = ()
    """Checks of a whole object or list, run after its members passed their own."""
    messages: Mapping[str, str] = field(default_factory=dict)
    docs_note: str | None = None
    doc_type: str | None = None
    documented: bool = True
    """False for fields that are not part of the API (kopf's bookkeeping): left out of docs/api.md."""

    def with_(self, **changes: Any) -> Field:
        """A copy with some parts changed (e.g. another description for a shared field)."""
        return replace(self, **changes)

    @property
    def required_names(self) -> list[str]:
        return [name for name, sub in self.properties.items() if sub.required]


def string(description: str, **kw: Any) -> Field:
    return Field(type="string", description=description, **kw)


def integer(description: str, **kw: Any) -> Field:
    return Field(type="integer", description=description, **kw)


def boolean(description: str, **kw: Any) -> Field:
    return Field(type="boolean", description=description, **kw)


def obj(description: str, properties: Mapping[str, Field] | None = None, **kw: Any) -> Field:
    return Field(type="object", description=description, properties=properties or {}, **kw)


def array(description: str, items: Field, **kw: Any) -> Field:
    return Field(type="array", description=description, items=items, **kw)


@dataclass(frozen=True, kw_only=True)
class PrinterColumn:
    name: str
    type: Literal["string", "date", "integer", "number", "boolean"]
    json_path: str
    description: str | None = None


@dataclass(frozen=True, kw_only=True)
class Kind:
    """A custom resource kind: its names, the CRD's top-level schema and how it is printed."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    scope: Literal["Namespaced", "Cluster"]
    description: str
    spec: Field
    status: Field
    printer_columns: tuple[PrinterColumn, ...]
    header: str
    """The comment block written at the top of the CRD file."""
    docs_page: str = "docs/api.md"
    """The page (relative to the repository) whose field tables are generated from this kind."""
    group: str = "vaultsync.io"
    version: str = "v1alpha1"
    categories: tuple[str, ...] = ("vaultsync",)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def crd_file(self) -> str:
        return f"{self.plural}.yaml"

    @property
    def root(self) -> Field:
        """The whole object as one field: ``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``."""
        return obj(
            self.description,
            {
                "apiVersion": string(
                    "APIVersion defines the versioned schema of this representation of an object: "
                    f"{self.group}/{self.version}."
                ),
                "kind": string(f"Kind is the REST resource this object represents, {self.kind}."),
                "metadata": Field(type="object"),
                "spec": self.spec.with_(required=True),
                "status": self.status,
            },
        )


# ------------------------------------------------------------------------------------------- OpenAPI


def _schema(f: Field) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if f.type == "int-or-string":
        out["x-kubernetes-int-or-string"] = True
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    else:
        out["type"] = f.type
    if f.description:
        out["description"] = f.description
    required = f.required_names
    if required:
        out["required"] = required
    for key, value in (
        ("enum", list(f.enum) if f.enum is not None else None),
        ("format", f.format),
        ("minimum", f.minimum),
        ("maximum", f.maximum),
        ("minLength", f.min_length),
        ("maxLength", f.max_length),
        ("pattern", f.pattern),
        ("minItems", f.min_items),
        ("maxItems", f.max_items),
        ("maxProperties", f.max_properties),
        ("x-kubernetes-list-type", f.list_type),
        ("x-kubernetes-list-map-keys", list(f.list_map_keys) or None),
    ):
        if value is not None:
            out[key] = value
    if f.default is not NO_DEFAULT:
        out["default"] = f.default
    denied: dict[str, Any] = {}
    if f.not_pattern is not None:
        denied["pattern"] = f.not_pattern
    if f.not_enum is not None:
        denied["enum"] = list(f.not_enum)
    rules = dict(f.rules or {})
    if denied:
        if "not" in rules:
            raise ValueError("a field has both a deny-list and a 'not' rule: merge them into the rule")
        rules["not"] = denied
    clash = set(rules) & set(out)
    if clash:
        raise ValueError(f"rules {sorted(clash)} would overwrite the field's own schema")
    out.update(rules)
    if f.preserve_unknown:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if f.properties:
        out["properties"] = {name: _schema(sub) for name, sub in f.properties.items()}
    if f.items is not None:
        out["items"] = _schema(f.items)
    if f.values is not None:
        out["additionalProperties"] = _schema(f.values)
    return out


def openapi(kind: Kind) -> dict[str, Any]:
    """The CRD's ``openAPIV3Schema`` for ``kind``."""
    return _schema(kind.root)


def crd(kind: Kind) -> dict[str, Any]:
    """The whole CustomResourceDefinition of ``kind``."""
    columns: list[dict[str, Any]] = []
    for c in kind.printer_columns:
        column: dict[str, Any] = {"name": c.name, "type": c.type}
        if c.description:
            column["description"] = c.description
        column["jsonPath"] = c.json_path
        columns.append(column)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/name": "vaultsync", "app.kubernetes.io/part-of": "vaultsync"},
        },
        "spec": {
            "group": kind.group,
            "scope": kind.scope,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            },
            "versions": [
                {
                    "name": kind.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": openapi(kind)},
                }
            ],
        },
    }
