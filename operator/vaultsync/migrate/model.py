"""What a conversion produces: our objects, and a finding for everything that did not map one to one.

Pure data and helpers; no I/O. A :class:`Finding` names the source object, the field and why:

* ``unmapped``: the field (or the whole object) has no vaultsync equivalent; the output lacks it, and
  ``vaultsync convert`` exits with :data:`EXIT_UNMAPPED`;
* ``note``: mapped, but with a difference in behaviour worth knowing (the exit code does not change).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vaultsync.core.duration import format_duration, parse_duration

API_VERSION = "vaultsync.io/v1alpha1"

EXIT_OK = 0
"""Every object and field mapped."""
EXIT_UNMAPPED = 1
"""Some objects or fields could not be mapped (listed on stderr); everything else was written."""
EXIT_USAGE = 2
"""The input could not be read (no such file, not YAML, not Kubernetes objects)."""

Severity = Literal["unmapped", "note"]

# Metadata that belongs to the source object's life in its cluster, never copied to the converted object.
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


@dataclass(frozen=True)
class Finding:
    severity: Severity
    source: str
    field: str
    reason: str

    def line(self) -> str:
        label = "not mapped" if self.severity == "unmapped" else "note"
        return f"{label}: {self.source}: {self.field}: {self.reason}"


@dataclass
class Result:
    objects: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_UNMAPPED if any(f.severity == "unmapped" for f in self.findings) else EXIT_OK


@dataclass(frozen=True)
class Options:
    """``no_connections``: the operator's own settings (VAULT_ADDR, ...) serve every converted object, so
    no VaultConnection is written and no ``spec.connection`` set. ``kv1_mounts``: mounts that are KV
    version 1, for peers whose manifests do not say (ricoberger's operator detects it at run time)."""

    no_connections: bool = False
    kv1_mounts: frozenset[str] = frozenset()


def describe(obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` (or ``Kind name`` for a cluster-scoped object) of a source object."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        meta = {}
    name = str(meta.get("name", "<no name>"))
    namespace = meta.get("namespace")
    return f"{obj.get('kind', '<no kind>')} {namespace}/{name}" if namespace else f"{obj.get('kind')} {name}"


class Recorder:
    """Collects the findings about one source object."""

    def __init__(self, obj: Mapping[str, Any], findings: list[Finding]) -> None:
        self.source = describe(obj)
        self.findings = findings

    def unmapped(self, field_name: str, reason: str) -> None:
        self.findings.append(Finding("unmapped", self.source, field_name, reason))

    def note(self, field_name: str, reason: str) -> None:
        self.findings.append(Finding("note", self.source, field_name, reason))


def new_object(kind: str, source: Mapping[str, Any], name: str, namespace: str | None) -> dict[str, Any]:
    """A vaultsync object that keeps the source's labels and annotations (GitOps tools track objects by
    them), without the bookkeeping that belongs to the source's life in its cluster."""
    meta = source.get("metadata") or {}
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    labels = meta.get("labels")
    if isinstance(labels, Mapping) and labels:
        metadata["labels"] = dict(labels)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROPPED_ANNOTATIONS}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": {}}


def duration(value: Any, field_name: str, rec: Recorder) -> str | None:
    """A peer's duration (Go's time.ParseDuration syntax, or seconds as a number) in the form the CRD
    accepts (``30s``, ``1h30m``); None, with a finding, when it has none."""
    try:
        seconds = float(value) if isinstance(value, int | float) else parse_duration(str(value))
    except ValueError as exc:
        rec.unmapped(field_name, f"{value!r} is not a duration vaultsync reads ({exc})")
        return None
    if not math.isfinite(seconds) or seconds < 0:
        rec.unmapped(field_name, f"{value!r} is not a duration vaultsync reads")
        return None
    if seconds and seconds < 1:
        rec.unmapped(field_name, f"{value!r} is below one second, the shortest interval vaultsync accepts")
        return None
    text = format_duration(round(seconds, 3))
    return "0" if text == "0s" else text


def split_mount(full_path: str) -> tuple[str, str]:
    """``kvv2/apps/db`` -> (``kvv2``, ``apps/db``): the first segment is the mount."""
    mount, _, rest = full_path.strip("/").partition("/")
    return mount, rest
