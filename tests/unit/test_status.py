"""Status and the Ready condition (pure)."""

from __future__ import annotations

from vaultsync.core.status import ready_condition, status_patch


def test_last_transition_time_moves_only_when_the_status_flips() -> None:
    first = ready_condition({}, ready=True, reason="Synced", message="ok", generation=1, now="T1")
    current = {"conditions": [first]}
    again = ready_condition(current, ready=True, reason="Synced", message="ok", generation=2, now="T2")
    assert again["lastTransitionTime"] == "T1"
    assert again["observedGeneration"] == 2
    failed = ready_condition(
        current, ready=False, reason="VaultUnavailable", message="down", generation=2, now="T3"
    )
    assert failed["lastTransitionTime"] == "T3"
    assert failed["status"] == "False"


def test_unchanged_status_gives_an_empty_patch() -> None:
    condition = ready_condition({}, ready=True, reason="Synced", message="ok", generation=1, now="T1")
    current = {"secretName": "db", "secretMAC": "hmac-sha256:aa", "conditions": [condition]}
    same = ready_condition(current, ready=True, reason="Synced", message="ok", generation=1, now="T9")
    assert (
        status_patch(current, {"secretName": "db", "secretMAC": "hmac-sha256:aa", "conditions": [same]}) == {}
    )


def test_patch_holds_only_what_changed_and_keeps_other_conditions() -> None:
    other = {"type": "Custom", "status": "True"}
    ready = ready_condition({}, ready=True, reason="Synced", message="ok", generation=1, now="T1")
    current = {"secretName": "db", "conditions": [other, ready]}
    failed = ready_condition(current, ready=False, reason="NotFound", message="gone", generation=1, now="T2")
    patch = status_patch(current, {"secretName": "db", "conditions": [failed]})
    assert "secretName" not in patch
    assert patch["conditions"] == [other, failed]
