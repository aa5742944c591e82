"""Runs the Argo CD health check (deploy/argocd/health.lua) in Debian's lua5.1, the way Argo CD runs it
(tests/lua/argocd_health_runner.lua: `obj` as a global, JSON null as nil, only Argo CD's libraries), and the
Flux health-check expressions (deploy/flux/health-checks.yaml) in cel-python, the way Flux evaluates them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
HEALTH_SCRIPT = REPO_ROOT / "deploy" / "argocd" / "health.lua"
FLUX_CHECKS = REPO_ROOT / "deploy" / "flux" / "health-checks.yaml"
RUNNER = Path(__file__).resolve().parent / "lua" / "argocd_health_runner.lua"
KINDS = (
    "VaultSecret",
    "VaultDynamicSecret",
    "VaultPKISecret",
    "VaultConnection",
    "VaultSecretSet",
    "ClusterVaultSecretSet",
)
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def health(lua: Path, obj: Mapping[str, Any], script: Path = HEALTH_SCRIPT) -> dict[str, str]:
    """{status, message} that the health script returns for `obj`."""
    result = subprocess.run(
        [str(lua), str(RUNNER), str(script)],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, str] = json.loads(result.stdout)
    assert answer["status"] in ARGO_STATUSES, answer
    return answer


@cache
def flux_expressions() -> dict[str, dict[str, Any]]:
    """kind -> {inProgress, failed, current} as compiled CEL programs."""
    environment = celpy.Environment()
    kustomization = yaml.safe_load(FLUX_CHECKS.read_text())
    return {
        entry["kind"]: {
            key: environment.program(environment.compile(entry[key]))
            for key in ("inProgress", "failed", "current")
        }
        for entry in kustomization["spec"]["healthCheckExprs"]
    }


def flux_status(obj: Mapping[str, Any]) -> str:
    """InProgress, Failed or Current, as Flux computes it from healthCheckExprs: kstatus' generic
    observedGeneration check first, then inProgress, failed, current; none true is InProgress."""
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if observed is not None and observed != generation:
        return "InProgress"
    programs = flux_expressions()[str(obj["kind"])]
    activation = celpy.json_to_cel(dict(obj))
    for key, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if bool(programs[key].evaluate(activation)):
            return verdict
    return "InProgress"
