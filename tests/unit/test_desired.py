"""The desired Secret and change detection (pure)."""

from __future__ import annotations

import base64
import json

import pytest

from vaultsync.core.desired import (
    MANAGED_BY_LABEL,
    MANAGED_KEYS_ANNOTATION,
    OWNER_ANNOTATION,
    Owner,
    build_secret,
    check_ownership,
    desired_secret,
    is_up_to_date,
    owner_of,
    without_our_keys,
)
from vaultsync.core.errors import TARGET_CONFLICT, SyncError
from vaultsync.core.spec import TargetSpec

KEY = b"k" * 32
OWNER = Owner(namespace="shop", name="db", uid="uid-1")


def target(policy: str = "Owner", **extra: object) -> TargetSpec:
    return TargetSpec(
        name="db",
        labels=extra.get("labels", {}),  # type: ignore[arg-type]
        annotations=extra.get("annotations", {}),  # type: ignore[arg-type]
        creation_policy=policy,  # type: ignore[arg-type]
    )


def stored(secret: dict[str, object]) -> dict[str, object]:
    """What the API server would return: the object plus a uid and resourceVersion."""
    result = json.loads(json.dumps(secret))
    result["metadata"].update({"uid": "secret-uid", "resourceVersion": "7"})
    return result


def test_new_owner_secret_has_bookkeeping_and_owner_reference() -> None:
    desired = desired_secret(target(labels={"app": "shop"}), "Opaque", {"password": b"pw"})
    secret = build_secret(None, desired, OWNER)
    meta = secret["metadata"]
    assert meta["labels"] == {"app": "shop", MANAGED_BY_LABEL: "vaultsync"}
    assert meta["annotations"][OWNER_ANNOTATION] == "db"
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert secret["data"] == {"password": base64.b64encode(b"pw").decode()}
    assert secret["type"] == "Opaque"


def test_orphan_secret_has_no_owner_reference() -> None:
    secret = build_secret(None, desired_secret(target("Orphan"), "Opaque", {"a": b"1"}), OWNER)
    assert "ownerReferences" not in secret["metadata"]


def test_target_labels_cannot_clobber_bookkeeping() -> None:
    desired = desired_secret(target(labels={MANAGED_BY_LABEL: "someone"}), "Opaque", {})
    secret = build_secret(None, desired, OWNER)
    assert secret["metadata"]["labels"][MANAGED_BY_LABEL] == "vaultsync"


def test_up_to_date_secret_needs_no_write_and_changes_are_seen() -> None:
    desired = desired_secret(target(labels={"app": "shop"}), "Opaque", {"password": b"pw"})
    existing = stored(build_secret(None, desired, OWNER))
    assert is_up_to_date(existing, desired, OWNER, KEY)
    changed = desired_secret(target(labels={"app": "shop"}), "Opaque", {"password": b"new"})
    assert not is_up_to_date(existing, changed, OWNER, KEY)
    relabelled = desired_secret(target(labels={"app": "other"}), "Opaque", {"password": b"pw"})
    assert not is_up_to_date(existing, relabelled, OWNER, KEY)
    retyped = desired_secret(target(), "kubernetes.io/basic-auth", {"password": b"pw"})
    assert not is_up_to_date(existing, retyped, OWNER, KEY)
    orphaned = desired_secret(target("Orphan", labels={"app": "shop"}), "Opaque", {"password": b"pw"})
    assert not is_up_to_date(existing, orphaned, OWNER, KEY)


def test_removed_target_labels_are_removed_and_foreign_labels_kept() -> None:
    first = desired_secret(target(labels={"app": "shop", "tier": "db"}), "Opaque", {"a": b"1"})
    existing = stored(build_secret(None, first, OWNER))
    existing["metadata"]["labels"]["added-by-someone"] = "yes"  # type: ignore[index]
    second = desired_secret(target(labels={"app": "shop"}), "Opaque", {"a": b"1"})
    assert not is_up_to_date(existing, second, OWNER, KEY)
    updated = build_secret(existing, second, OWNER)
    assert updated["metadata"]["labels"] == {
        "app": "shop",
        "added-by-someone": "yes",
        MANAGED_BY_LABEL: "vaultsync",
    }
    assert updated["metadata"]["resourceVersion"] == "7"


def test_foreign_secret_is_a_target_conflict_unless_merge() -> None:
    foreign = {"metadata": {"name": "db", "labels": {}}, "data": {"other": "eA=="}}
    with pytest.raises(SyncError) as raised:
        check_ownership(foreign, desired_secret(target(), "Opaque", {}), OWNER)
    assert raised.value.reason == TARGET_CONFLICT
    assert "creationPolicy: Merge" in raised.value.message
    check_ownership(foreign, desired_secret(target("Merge"), "Opaque", {}), OWNER)


def test_our_secret_stripped_of_its_label_is_still_ours() -> None:
    desired = desired_secret(target(), "Opaque", {"a": b"1"})
    ours = stored(build_secret(None, desired, OWNER))
    del ours["metadata"]["labels"][MANAGED_BY_LABEL]  # type: ignore[index]
    check_ownership(ours, desired, OWNER)  # named by our owner annotation
    del ours["metadata"]["annotations"][OWNER_ANNOTATION]  # type: ignore[index]
    check_ownership(ours, desired, OWNER)  # still holds our ownerReference
    assert not is_up_to_date(ours, desired, OWNER, KEY)  # and is rewritten with the label
    other = Owner(namespace="shop", name="db", uid="uid-2")  # a new VaultSecret of the same name
    with pytest.raises(SyncError):
        check_ownership(ours, desired, other)


def test_secret_of_another_vaultsecret_is_a_conflict_even_with_merge() -> None:
    desired = desired_secret(target("Merge"), "Opaque", {"a": b"1"})
    theirs = build_secret(None, desired, Owner(namespace="shop", name="other", uid="uid-2"))
    with pytest.raises(SyncError) as raised:
        check_ownership(theirs, desired, OWNER)
    assert "VaultSecret other" in raised.value.message


def test_merge_writes_only_our_keys_and_removes_only_them() -> None:
    foreign = stored(
        {"metadata": {"name": "db", "labels": {"x": "y"}}, "type": "Opaque", "data": {"theirs": "dA=="}}
    )
    desired = desired_secret(target("Merge"), "Opaque", {"ours": b"1"})
    merged = build_secret(foreign, desired, OWNER)
    assert set(merged["data"]) == {"theirs", "ours"}
    assert json.loads(merged["metadata"]["annotations"][MANAGED_KEYS_ANNOTATION]) == ["ours"]
    assert is_up_to_date(stored(merged), desired, OWNER, KEY)
    assert owner_of(merged) == "db"
    cleaned = without_our_keys(merged)
    assert cleaned["data"] == {"theirs": "dA=="}
    assert cleaned["metadata"]["labels"] == {"x": "y"}
    assert OWNER_ANNOTATION not in cleaned["metadata"]["annotations"]


def test_merge_drops_keys_we_no_longer_write() -> None:
    foreign = stored({"metadata": {"name": "db"}, "type": "Opaque", "data": {"theirs": "dA=="}})
    first = build_secret(foreign, desired_secret(target("Merge"), "Opaque", {"a": b"1", "b": b"2"}), OWNER)
    second = desired_secret(target("Merge"), "Opaque", {"a": b"1"})
    assert not is_up_to_date(stored(first), second, OWNER, KEY)
    assert set(build_secret(stored(first), second, OWNER)["data"]) == {"theirs", "a"}
