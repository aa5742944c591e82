"""The VaultSecret's status: the Ready condition and the fields the contract lists. Pure functions.

A status patch is computed against the current status and is empty when nothing changed, so that an
unchanged refresh writes nothing to the Kubernetes API.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

READY = "Ready"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(
    current: Mapping[str, Any], *, ready: bool, reason: str, message: str, generation: int | None, now: str
) -> dict[str, Any]:
    """The Ready condition; lastTransitionTime moves only when the status flips (Kubernetes convention)."""
    previous = next((c for c in current.get("conditions") or [] if c.get("type") == READY), None)
    status = "True" if ready else "False"
    transition = previous.get("lastTransitionTime") if previous and previous.get("status") == status else now
    condition: dict[str, Any] = {
        "type": READY,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition or now,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `current` into `desired` for the keys `desired` names; {} if none differ."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if key == "conditions":
            others = [c for c in current.get("conditions") or [] if c.get("type") != READY]
            merged = others + list(value)
            if merged != list(current.get("conditions") or []):
                patch[key] = merged
        elif current.get(key) != value:
            patch[key] = value
    return patch


def current_ready(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == READY), None)
