"""The Secret a VaultSecret asks for, and whether an existing Secret already is that Secret. Pure functions.

Bookkeeping kept on every Secret the operator writes:
- label `app.kubernetes.io/managed-by: vaultsync` (the operator watches Secrets by this label for drift);
- annotation `vaultsync.io/owner`: the name of the VaultSecret (same namespace) that writes it;
- annotation `vaultsync.io/managed-metadata`: the target labels/annotations keys we set, so that keys
  removed from `spec.target` are removed from the Secret and nobody else's are touched;
- with `creationPolicy: Merge`, annotation `vaultsync.io/managed-keys`: the data keys we wrote;
- annotation `vaultsync.io/managed-as`: how the operator came to write the Secret, set at the first write and
  never changed: `created` (first written with `Owner`/`Orphan`: the operator made it, every key is ours) or
  `merged` (first written with `Merge`: keys, type and owners that are not ours may be someone else's). A
  `merged` Secret stays a merge target: switching its VaultSecret to `Owner`/`Orphan` is a TargetConflict,
  because those policies replace the whole data, set the type (re-creating the Secret) and add an
  ownerReference. Secrets written before this annotation existed count as `merged` when they carry the
  managed-keys annotation (only Merge writes it) and as `created` otherwise.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vaultsync.core.errors import TARGET_CONFLICT, SyncError
from vaultsync.core.mac import secret_mac
from vaultsync.core.spec import TargetSpec

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "vaultsync"
OWNER_ANNOTATION = "vaultsync.io/owner"
MANAGED_METADATA_ANNOTATION = "vaultsync.io/managed-metadata"
MANAGED_KEYS_ANNOTATION = "vaultsync.io/managed-keys"
MANAGED_AS_ANNOTATION = "vaultsync.io/managed-as"
CREATED = "created"
MERGED = "merged"
BOOKKEEPING_LABELS = frozenset({MANAGED_BY_LABEL})
BOOKKEEPING_ANNOTATIONS = frozenset(
    {OWNER_ANNOTATION, MANAGED_METADATA_ANNOTATION, MANAGED_KEYS_ANNOTATION, MANAGED_AS_ANNOTATION}
)
SYSTEM_SECRET_TYPES: Mapping[str, str] = {
    "kubernetes.io/service-account-token": "it holds a ServiceAccount's API token, which the token "
    "controller manages",
    "bootstrap.kubernetes.io/token": "it holds a bootstrap token that lets nodes join the cluster",
    "helm.sh/release.v1": "it holds a Helm release's state, which Helm manages",
}
"""Secret types that Merge never writes into, and why: writing their keys would let a VaultSecret author
tamper with credentials or state that Kubernetes or Helm manage."""


@dataclass(frozen=True)
class Owner:
    """The VaultSecret a Secret belongs to."""

    namespace: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": "vaultsync.io/v1alpha1",
            "kind": "VaultSecret",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }


@dataclass(frozen=True)
class DesiredSecret:
    name: str
    secret_type: str
    data: Mapping[str, bytes]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    creation_policy: str


def desired_secret(target: TargetSpec, secret_type: str, data: Mapping[str, bytes]) -> DesiredSecret:
    """Target labels and annotations never override the operator's own bookkeeping keys."""
    labels = {k: v for k, v in target.labels.items() if k not in BOOKKEEPING_LABELS}
    annotations = {k: v for k, v in target.annotations.items() if k not in BOOKKEEPING_ANNOTATIONS}
    return DesiredSecret(
        name=target.name,
        secret_type=secret_type,
        data=dict(data),
        labels=labels,
        annotations=annotations,
        creation_policy=target.creation_policy,
    )


def encode_data(data: Mapping[str, bytes]) -> dict[str, str]:
    return {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}


def decode_data(encoded: Mapping[str, str] | None) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (encoded or {}).items()}


def _managed_metadata(secret: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    raw = (secret.get("metadata", {}).get("annotations") or {}).get(MANAGED_METADATA_ANNOTATION)
    try:
        parsed = json.loads(raw) if raw else {}
        return set(parsed.get("labels", [])), set(parsed.get("annotations", []))
    except (ValueError, AttributeError, TypeError):
        return set(), set()


def _managed_keys(secret: Mapping[str, Any]) -> set[str]:
    raw = (secret.get("metadata", {}).get("annotations") or {}).get(MANAGED_KEYS_ANNOTATION)
    try:
        return set(json.loads(raw)) if raw else set()
    except (ValueError, TypeError):
        return set()


def owner_of(secret: Mapping[str, Any]) -> str | None:
    """The VaultSecret named in the Secret's bookkeeping, or None for a Secret we did not write."""
    meta = secret.get("metadata", {})
    if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
        return None
    owner = (meta.get("annotations") or {}).get(OWNER_ANNOTATION)
    return owner if isinstance(owner, str) else None


def _ours_unlabelled(secret: Mapping[str, Any], owner: Owner) -> bool:
    """Our Secret whose managed-by label someone removed by hand: it still names this VaultSecret in its
    owner annotation or holds its ownerReference. That is drift to repair, not a foreign Secret."""
    meta = secret.get("metadata", {})
    if (meta.get("annotations") or {}).get(OWNER_ANNOTATION) == owner.name:
        return True
    return any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences") or [])


def managed_as(secret: Mapping[str, Any]) -> str:
    """`created` or `merged`: how the operator came to write this Secret (see the module docstring). A Secret
    that the operator has not written (yet) is `merged` when written: it is someone else's."""
    annotations = secret.get("metadata", {}).get("annotations") or {}
    recorded = annotations.get(MANAGED_AS_ANNOTATION)
    if recorded in (CREATED, MERGED):
        return str(recorded)
    if MANAGED_KEYS_ANNOTATION in annotations or recorded is not None:
        return MERGED  # written by Merge before the annotation existed (or an unknown value: the safe side)
    if owner_of(secret) is None and not _has_any_owner_trace(secret):
        return MERGED
    return CREATED


def _has_any_owner_trace(secret: Mapping[str, Any]) -> bool:
    meta = secret.get("metadata", {})
    if OWNER_ANNOTATION in (meta.get("annotations") or {}):
        return True
    return any(ref.get("kind") == "VaultSecret" for ref in meta.get("ownerReferences") or [])


def check_ownership(existing: Mapping[str, Any] | None, desired: DesiredSecret, owner: Owner) -> None:
    """Raises TargetConflict when the Secret exists and is not ours to write (with this policy)."""
    if existing is None:
        return
    name = desired.name
    secret_type = existing.get("type", "Opaque")
    if desired.creation_policy == "Merge" and secret_type in SYSTEM_SECRET_TYPES:
        raise SyncError(
            TARGET_CONFLICT,
            f"Secret {name} has type {secret_type}: creationPolicy: Merge never writes into it because "
            f"{SYSTEM_SECRET_TYPES[secret_type]}. Give spec.target.name a Secret of your own",
        )
    current_owner = owner_of(existing)
    if current_owner == owner.name or (current_owner is None and _ours_unlabelled(existing, owner)):
        if desired.creation_policy != "Merge" and managed_as(existing) == MERGED:
            raise SyncError(
                TARGET_CONFLICT,
                f"Secret {name} was first written by creationPolicy: Merge, so its other keys, type and "
                f"owners are not vaultsync's: it stays a merge target and is left untouched. Set "
                f"spec.target.creationPolicy back to Merge, or give spec.target.name a new Secret for "
                f"{desired.creation_policy}",
            )
        return
    if current_owner is not None:
        raise SyncError(
            TARGET_CONFLICT,
            f"Secret {name} is already written by VaultSecret {current_owner}; "
            "give this VaultSecret another spec.target.name",
        )
    if desired.creation_policy != "Merge":
        raise SyncError(
            TARGET_CONFLICT,
            f"Secret {name} exists and was not created by vaultsync; it is left untouched. Choose another "
            "spec.target.name, delete that Secret, or set spec.target.creationPolicy: Merge "
            "to add our keys to it",
        )


def build_secret(existing: Mapping[str, Any] | None, desired: DesiredSecret, owner: Owner) -> dict[str, Any]:
    """The full Secret object to create or replace, keeping whatever others put on an existing one."""
    secret: dict[str, Any] = (
        copy.deepcopy(dict(existing)) if existing else {"apiVersion": "v1", "kind": "Secret"}
    )
    meta = secret.setdefault("metadata", {})
    meta["name"] = desired.name
    meta["namespace"] = owner.namespace
    meta.pop("managedFields", None)
    old_labels, old_annotations = _managed_metadata(secret)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in old_labels}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in old_annotations}
    labels.update(desired.labels)
    labels[MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    annotations.update(desired.annotations)
    annotations[OWNER_ANNOTATION] = owner.name
    if existing is not None:
        annotations[MANAGED_AS_ANNOTATION] = managed_as(existing)
    else:
        annotations[MANAGED_AS_ANNOTATION] = MERGED if desired.creation_policy == "Merge" else CREATED
    annotations[MANAGED_METADATA_ANNOTATION] = json.dumps(
        {"labels": sorted(desired.labels), "annotations": sorted(desired.annotations)}, separators=(",", ":")
    )
    encoded = encode_data(desired.data)
    if desired.creation_policy == "Merge":
        data = {k: v for k, v in (secret.get("data") or {}).items() if k not in _managed_keys(secret)}
        data.update(encoded)
        annotations[MANAGED_KEYS_ANNOTATION] = json.dumps(sorted(desired.data), separators=(",", ":"))
        secret["data"] = data
        secret.setdefault("type", desired.secret_type)
    else:
        secret["data"] = encoded
        secret["type"] = desired.secret_type
    secret.pop("stringData", None)
    meta["labels"] = labels
    meta["annotations"] = annotations
    refs = [ref for ref in meta.get("ownerReferences") or [] if ref.get("uid") != owner.uid]
    if desired.creation_policy == "Owner":
        refs.append(owner.reference())
    if refs:
        meta["ownerReferences"] = refs
    else:
        meta.pop("ownerReferences", None)
    return secret


def our_data(existing: Mapping[str, Any], desired: DesiredSecret) -> dict[str, bytes]:
    """The part of an existing Secret's data that this VaultSecret is responsible for."""
    data = decode_data(existing.get("data"))
    if desired.creation_policy == "Merge":
        keys = _managed_keys(existing) | set(desired.data)
        return {k: v for k, v in data.items() if k in keys}
    return data


def is_up_to_date(existing: Mapping[str, Any], desired: DesiredSecret, owner: Owner, mac_key: bytes) -> bool:
    """Whether writing `build_secret(existing, ...)` would change nothing that matters."""
    if secret_mac(mac_key, our_data(existing, desired)) != secret_mac(mac_key, desired.data):
        return False
    if desired.creation_policy != "Merge" and existing.get("type", "Opaque") != desired.secret_type:
        return False
    meta = existing.get("metadata", {})
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or annotations.get(OWNER_ANNOTATION) != owner.name:
        return False
    if any(labels.get(k) != v for k, v in desired.labels.items()):
        return False
    if any(annotations.get(k) != v for k, v in desired.annotations.items()):
        return False
    old_labels, old_annotations = _managed_metadata(existing)
    if old_labels != set(desired.labels) or old_annotations != set(desired.annotations):
        return False
    if desired.creation_policy == "Merge" and _managed_keys(existing) != set(desired.data):
        return False
    owned = any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences") or [])
    return owned == (desired.creation_policy == "Owner")


def last_synced_desired(copy: Mapping[str, Any], owner: Owner) -> DesiredSecret:
    """What writes back `copy`, a Secret as the operator last synced it (to restore it while Vault cannot
    be read): the same data (with Merge: only our keys), type, target labels and annotations, and the policy
    it was written with (Merge for a `merged` Secret, Owner when it holds our ownerReference, else Orphan)."""
    meta = copy.get("metadata", {})
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if managed_as(copy) == MERGED:
        policy = "Merge"
    elif any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences") or []):
        policy = "Owner"
    else:
        policy = "Orphan"
    name = str(meta.get("name", ""))
    managed_labels, managed_annotations = _managed_metadata(copy)
    return DesiredSecret(
        name=name,
        secret_type=str(copy.get("type", "Opaque")),
        data=our_data(copy, DesiredSecret(name, "", {}, {}, {}, policy)),
        labels={k: v for k, v in labels.items() if k in managed_labels and k not in BOOKKEEPING_LABELS},
        annotations={
            k: v
            for k, v in annotations.items()
            if k in managed_annotations and k not in BOOKKEEPING_ANNOTATIONS
        },
        creation_policy=policy,
    )


def without_our_keys(existing: Mapping[str, Any]) -> dict[str, Any]:
    """The Secret with the keys and bookkeeping of a Merge VaultSecret removed (on its deletion)."""
    secret: dict[str, Any] = copy.deepcopy(dict(existing))
    meta = secret.setdefault("metadata", {})
    meta.pop("managedFields", None)
    ours = _managed_keys(secret)
    old_labels, old_annotations = _managed_metadata(secret)
    secret["data"] = {k: v for k, v in (secret.get("data") or {}).items() if k not in ours}
    meta["labels"] = {
        k: v
        for k, v in (meta.get("labels") or {}).items()
        if k not in old_labels and k not in BOOKKEEPING_LABELS
    }
    meta["annotations"] = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k not in old_annotations and k not in BOOKKEEPING_ANNOTATIONS
    }
    return secret
