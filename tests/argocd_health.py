"""Runs the Argo CD health check (deploy/argocd/health.lua) in Debian's lua5.1, the way Argo CD runs it
(tests/lua/argocd_health_runner.lua: `obj` as a global, JSON null as nil, only Argo CD's libraries)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
HEALTH_SCRIPT = REPO_ROOT / "deploy" / "argocd" / "health.lua"
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
