"""The Argo CD health check (deploy/argocd/health.lua) in lua5.1 and the Flux health-check expressions
(deploy/flux/health-checks.yaml) in cel-python, on objects the end-to-end runs cannot produce on demand
(kstatus conditions, reasons of future kinds, malformed status), and their shipping: the argocd-cm
kustomization and docs/argocd.md carry exactly those files, for every kind.

tests/e2e/test_argocd_health.py runs the same script on real objects of the local stack."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.argocd_health import FLUX_CHECKS, HEALTH_SCRIPT, KINDS, REPO_ROOT, flux_status, health
from vaultsync.devstack.binaries import find_kubectl, find_lua


@pytest.fixture(scope="module")
def lua() -> Path:
    return find_lua()


def obj(generation: int = 1, status: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "VaultSecret",
        "metadata": {"name": "x", "namespace": "shop", "generation": generation},
        **extra,
    }
    if status is not None:
        body["status"] = status
    return body


def ready(status: str, reason: str, message: str = "", generation: int | None = 1) -> dict[str, Any]:
    condition = {"type": "Ready", "status": status, "reason": reason, "message": message}
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def test_ready_true_and_current_is_healthy(lua: Path) -> None:
    answer = health(lua, obj(status={"observedGeneration": 1, "conditions": [ready("True", "Synced", "ok")]}))
    assert answer == {"status": "Healthy", "message": "Synced: ok"}


def test_ready_false_is_degraded_with_reason_and_message(lua: Path) -> None:
    status = {"observedGeneration": 1, "conditions": [ready("False", "PermissionDenied", "Vault denied it")]}
    assert health(lua, obj(status=status)) == {
        "status": "Degraded",
        "message": "PermissionDenied: Vault denied it",
    }


@pytest.mark.parametrize(
    ("status", "message_part"),
    [
        (None, "first sync"),
        ({}, "generation 1"),
        ({"observedGeneration": 1}, "Ready condition"),
        ({"observedGeneration": 1, "conditions": "not a list"}, "Ready condition"),
        ({"observedGeneration": 1, "conditions": [{"type": "Other", "status": "True"}]}, "Ready condition"),
    ],
)
def test_no_ready_condition_yet_is_progressing(lua: Path, status: Any, message_part: str) -> None:
    answer = health(lua, obj(status=status))
    assert answer["status"] == "Progressing"
    assert message_part in answer["message"]


def test_a_spec_change_the_operator_has_not_seen_is_progressing_even_if_ready(lua: Path) -> None:
    status = {"observedGeneration": 2, "conditions": [ready("True", "Synced", generation=2)]}
    answer = health(lua, obj(generation=3, status=status))
    assert answer == {
        "status": "Progressing",
        "message": "Waiting for the operator to process generation 3 (observed 2)",
    }
    # A failure of the previous generation is not the verdict on the new spec either.
    status = {"observedGeneration": 2, "conditions": [ready("False", "NotFound", generation=2)]}
    assert health(lua, obj(generation=3, status=status))["status"] == "Progressing"


def test_a_ready_condition_of_an_older_generation_is_progressing(lua: Path) -> None:
    status = {"observedGeneration": 3, "conditions": [ready("True", "Synced", generation=2)]}
    answer = health(lua, obj(generation=3, status=status))
    assert answer["status"] == "Progressing"
    assert "generation 2" in answer["message"]


@pytest.mark.parametrize("reason", ["Pending", "Progressing", "Reconciling"])
def test_ready_false_with_a_progress_reason_is_progressing(lua: Path, reason: str) -> None:
    status = {"observedGeneration": 1, "conditions": [ready("False", reason, "first sync pending")]}
    assert health(lua, obj(status=status)) == {
        "status": "Progressing",
        "message": f"{reason}: first sync pending",
    }


def test_ready_unknown_is_progressing(lua: Path) -> None:
    status = {"observedGeneration": 1, "conditions": [ready("Unknown", "Issuing", "asking Vault")]}
    assert health(lua, obj(status=status))["status"] == "Progressing"


def test_kstatus_abnormal_true_conditions(lua: Path) -> None:
    stalled = {"type": "Stalled", "status": "True", "reason": "InvalidSpec", "message": "spec.path is empty"}
    status = {"observedGeneration": 1, "conditions": [ready("True", "Synced"), stalled]}
    assert health(lua, obj(status=status)) == {
        "status": "Degraded",
        "message": "InvalidSpec: spec.path is empty",
    }
    reconciling = {"type": "Reconciling", "status": "True", "reason": "Renewing", "message": "lease"}
    status = {"observedGeneration": 1, "conditions": [ready("True", "Synced"), reconciling]}
    assert health(lua, obj(status=status)) == {"status": "Progressing", "message": "Renewing: lease"}


def test_cluster_scoped_kinds_and_null_fields(lua: Path) -> None:
    # A VaultConnection: cluster-scoped, no secretName; JSON nulls count as absent (as in Argo CD).
    body = obj(status={"observedGeneration": 1, "conditions": [ready("True", "Reachable", None)]})
    body["kind"], body["metadata"]["namespace"] = "VaultConnection", None
    assert health(lua, body) == {"status": "Healthy", "message": "Reachable"}


def test_the_script_uses_only_what_argo_cd_offers(lua: Path, tmp_path: Path) -> None:
    """The runner withholds io/os/require like Argo CD's sandbox: a script that uses them fails there."""
    script = tmp_path / "bad.lua"
    script.write_text('hs = {status = "Healthy", message = os.getenv("HOME")}\nreturn hs\n')
    with pytest.raises(AssertionError, match="os"):
        health(lua, obj(), script=script)


# Flux: the same verdicts as Argo CD ------------------------------------------------------------------
ARGO_TO_FLUX = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "Failed"}
FLUX_CASES = [
    ("no status", obj()),
    ("empty status", obj(status={})),
    ("no Ready", obj(status={"observedGeneration": 1, "conditions": [{"type": "Other", "status": "True"}]})),
    ("synced", obj(status={"observedGeneration": 1, "conditions": [ready("True", "Synced")]})),
    ("failed", obj(status={"observedGeneration": 1, "conditions": [ready("False", "NotFound", "gone")]})),
    (
        "spec changed",
        obj(generation=2, status={"observedGeneration": 1, "conditions": [ready("True", "Synced")]}),
    ),
    (
        "stale Ready",
        obj(generation=2, status={"observedGeneration": 2, "conditions": [ready("False", "NotFound")]}),
    ),
    ("pending", obj(status={"observedGeneration": 1, "conditions": [ready("False", "Pending")]})),
    ("unknown", obj(status={"observedGeneration": 1, "conditions": [ready("Unknown", "Issuing")]})),
    ("Ready without generation", obj(status={"conditions": [ready("True", "Synced", generation=None)]})),
]


@pytest.mark.parametrize("case", FLUX_CASES, ids=[c[0] for c in FLUX_CASES])
def test_flux_expressions_agree_with_the_argo_cd_check(lua: Path, case: tuple[str, dict[str, Any]]) -> None:
    _, body = case
    assert flux_status(body) == ARGO_TO_FLUX[health(lua, body)["status"]]


def test_flux_expressions_cover_every_kind_the_same_way() -> None:
    entries = yaml.safe_load(FLUX_CHECKS.read_text())["spec"]["healthCheckExprs"]
    assert [e["kind"] for e in entries] == list(KINDS)
    assert all(e["apiVersion"] == "vaultsync.io/v1alpha1" for e in entries)
    assert len({(e["inProgress"], e["failed"], e["current"]) for e in entries}) == 1


# Shipping: one source, every kind ---------------------------------------------------------------------
def rendered_argocd_cm() -> dict[str, Any]:
    rendered = subprocess.run(
        [str(find_kubectl()), "kustomize", str(REPO_ROOT / "deploy" / "argocd")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (config_map,) = list(yaml.safe_load_all(rendered))
    assert isinstance(config_map, dict)
    return config_map


def test_the_argocd_cm_kustomization_registers_the_script_for_every_kind() -> None:
    config_map = rendered_argocd_cm()
    assert (config_map["kind"], config_map["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert config_map["metadata"]["namespace"] == "argocd"
    script = HEALTH_SCRIPT.read_text()
    assert config_map["data"] == {
        f"resource.customizations.health.vaultsync.io_{kind}": script for kind in KINDS
    }


def test_docs_argocd_md_shows_the_script_and_the_argocd_cm_as_they_are() -> None:
    doc = (REPO_ROOT / "docs" / "argocd.md").read_text()
    script = HEALTH_SCRIPT.read_text()
    assert f"```lua\n{script}```" in doc
    # The hand-written argocd-cm of the page is the ConfigMap the kustomization renders.
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL)]
    (config_map,) = [b for b in blocks if b.get("kind") == "ConfigMap"]
    assert config_map == rendered_argocd_cm()


def test_docs_argocd_md_shows_the_flux_expressions_as_they_are() -> None:
    doc = (REPO_ROOT / "docs" / "argocd.md").read_text()
    assert f"```yaml\n{FLUX_CHECKS.read_text()}```" in doc
