"""The desired Secret and change detection (pure)."""

from __future__ import annotations

import base64
import json

import pytest

from vaultsync.core.desired import (
    MANAGED_AS_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_KEYS_ANNOTATION,
    OWNER_ANNOTATION,
    Owner,
    build_secret,
    check_ownership,
    desired_secret,
    is_up_to_date,
    last_synced_desired,
    managed_as,
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


# Merge stays a merge target (issue 10, finding 5) -----------------------------------------------------------
FOREIGN = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {
        "name": "db",
        "namespace": "shop",
        "uid": "foreign-uid",
        "labels": {"app": "legacy"},
        "annotations": {"team": "payments"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "legacy", "uid": "d-1"}],
    },
    "type": "kubernetes.io/basic-auth",
    "data": {"username": "dGhlaXJz", "password": "dGhlaXJz"},
}


def merged_into_foreign() -> dict[str, object]:
    desired = desired_secret(target("Merge"), "Opaque", {"token": b"ours"})
    check_ownership(FOREIGN, desired, OWNER)
    return stored(build_secret(FOREIGN, desired, OWNER))


@pytest.mark.parametrize("policy", ["Owner", "Orphan"])
def test_a_secret_first_written_by_merge_is_never_taken_over(policy: str) -> None:
    merged = merged_into_foreign()
    assert merged["metadata"]["annotations"][MANAGED_AS_ANNOTATION] == "merged"  # type: ignore[index]
    switched = desired_secret(target(policy), "Opaque", {"token": b"ours"})
    with pytest.raises(SyncError) as raised:
        check_ownership(merged, switched, OWNER)
    assert raised.value.reason == TARGET_CONFLICT
    assert "first written by creationPolicy: Merge" in raised.value.message
    assert "spec.target.creationPolicy" in raised.value.message
    # Merge itself goes on, and keeps their keys, type and owners.
    again = desired_secret(target("Merge"), "Opaque", {"token": b"new"})
    check_ownership(merged, again, OWNER)
    rewritten = build_secret(merged, again, OWNER)
    assert rewritten["type"] == "kubernetes.io/basic-auth"
    assert rewritten["metadata"]["ownerReferences"] == FOREIGN["metadata"]["ownerReferences"]  # type: ignore[index]
    assert rewritten["data"]["username"] == "dGhlaXJz"
    assert rewritten["metadata"]["annotations"][MANAGED_AS_ANNOTATION] == "merged"


def test_a_secret_merge_created_stays_a_merge_target_too() -> None:
    desired = desired_secret(target("Merge"), "Opaque", {"token": b"ours"})
    made = stored(build_secret(None, desired, OWNER))
    assert made["metadata"]["annotations"][MANAGED_AS_ANNOTATION] == "merged"  # type: ignore[index]
    with pytest.raises(SyncError):
        check_ownership(made, desired_secret(target("Owner"), "Opaque", {"token": b"ours"}), OWNER)


def test_created_secrets_switch_between_owner_and_orphan_freely() -> None:
    made = stored(build_secret(None, desired_secret(target("Owner"), "Opaque", {"a": b"1"}), OWNER))
    assert made["metadata"]["annotations"][MANAGED_AS_ANNOTATION] == "created"  # type: ignore[index]
    orphan = desired_secret(target("Orphan"), "Opaque", {"a": b"1"})
    check_ownership(made, orphan, OWNER)
    rewritten = build_secret(made, orphan, OWNER)
    assert rewritten["metadata"]["annotations"][MANAGED_AS_ANNOTATION] == "created"
    assert "ownerReferences" not in rewritten["metadata"]


def test_secrets_of_earlier_versions_count_as_merged_when_merge_wrote_them() -> None:
    merged = merged_into_foreign()
    del merged["metadata"]["annotations"][MANAGED_AS_ANNOTATION]  # type: ignore[index]
    assert managed_as(merged) == "merged"  # it carries the managed-keys annotation
    with pytest.raises(SyncError):
        check_ownership(merged, desired_secret(target("Owner"), "Opaque", {"token": b"x"}), OWNER)
    assert not is_up_to_date(merged, desired_secret(target("Owner"), "Opaque", {"token": b"x"}), OWNER, KEY)
    made = stored(build_secret(None, desired_secret(target(), "Opaque", {"a": b"1"}), OWNER))
    del made["metadata"]["annotations"][MANAGED_AS_ANNOTATION]  # type: ignore[index]
    assert managed_as(made) == "created"
    check_ownership(made, desired_secret(target(), "Opaque", {"a": b"1"}), OWNER)
    # ... and an in-sync Secret of an earlier version needs no write for the new annotation.
    assert is_up_to_date(made, desired_secret(target(), "Opaque", {"a": b"1"}), OWNER, KEY)


def test_target_annotations_cannot_forge_how_a_secret_is_managed() -> None:
    desired = desired_secret(
        target("Merge", annotations={MANAGED_AS_ANNOTATION: "created"}), "Opaque", {"token": b"x"}
    )
    merged = stored(build_secret(FOREIGN, desired, OWNER))
    assert merged["metadata"]["annotations"][MANAGED_AS_ANNOTATION] == "merged"  # type: ignore[index]
    with pytest.raises(SyncError):
        check_ownership(merged, desired_secret(target("Owner"), "Opaque", {"token": b"x"}), OWNER)


@pytest.mark.parametrize(
    "secret_type",
    ["kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token", "helm.sh/release.v1"],
)
def test_merge_never_writes_into_system_secret_types(secret_type: str) -> None:
    system = {**FOREIGN, "type": secret_type}
    desired = desired_secret(target("Merge"), "Opaque", {"token": b"x"})
    with pytest.raises(SyncError) as raised:
        check_ownership(system, desired, OWNER)
    assert raised.value.reason == TARGET_CONFLICT
    assert secret_type in raised.value.message and "because it holds" in raised.value.message
    # Not even one that an earlier version already merged into.
    ours = build_secret(FOREIGN, desired, OWNER)
    with pytest.raises(SyncError):
        check_ownership({**ours, "type": secret_type}, desired, OWNER)


# The last synced copy, written back while Vault cannot be read (issue 10, finding 10) ----------------------
def test_last_synced_desired_rebuilds_what_was_written() -> None:
    data = {"username": b"u", "password": b"p"}
    meta = {"labels": {"app": "shop"}, "annotations": {"note": "x"}}
    desired = desired_secret(target("Owner", **meta), "kubernetes.io/basic-auth", data)
    copy = stored(build_secret(None, desired, OWNER))
    copy["metadata"]["labels"]["someone-else"] = "y"  # type: ignore[index]
    assert last_synced_desired(copy, OWNER) == desired
    orphan = desired_secret(target("Orphan"), "Opaque", data)
    assert last_synced_desired(stored(build_secret(None, orphan, OWNER)), OWNER) == orphan


def test_last_synced_desired_of_a_merge_holds_only_our_keys() -> None:
    again = last_synced_desired(merged_into_foreign(), OWNER)
    assert again.creation_policy == "Merge"
    assert dict(again.data) == {"token": b"ours"}
    assert again.secret_type == "kubernetes.io/basic-auth"  # not written by Merge: the type stays theirs
