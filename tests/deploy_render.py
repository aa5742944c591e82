"""Renders the kustomize overlays under deploy/ into Kubernetes objects, for the deploy tests.

`render_overlay(path)` runs `kubectl kustomize` (the kubectl installed next to this Python, i.e. in the
project's venv) and returns the rendered objects as dicts. Pass `components=[PDB_V1BETA1_COMPONENT]` to
render an overlay for a Kubernetes 1.20 API server, which serves no policy/v1: the component rewrites the
PodDisruptionBudget to policy/v1beta1, exactly as a 1.20 user would add it to their overlay.

Applying a render to a real API server: the single-namespace overlay grants a Role in the namespace `apps`
(WATCHED_NAMESPACE), which it does not create; create that namespace first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy"
BASE = DEPLOY_DIR / "base"
CLUSTER_WIDE = DEPLOY_DIR / "overlays" / "cluster-wide"
SINGLE_NAMESPACE = DEPLOY_DIR / "overlays" / "single-namespace"
OVERLAYS: tuple[Path, ...] = (CLUSTER_WIDE, SINGLE_NAMESPACE)
PDB_V1BETA1_COMPONENT = DEPLOY_DIR / "components" / "pdb-v1beta1"
OPERATOR_NAMESPACE = "vaultsync-system"
WATCHED_NAMESPACE = "apps"


def kubectl_path() -> Path:
    """The kubectl of the environment running the tests (the venv's bin dir), else the one on PATH."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.exists():
        return candidate
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError(f"kubectl not found next to {sys.executable} nor on PATH")
    return Path(found)


def _kustomize(directory: Path) -> str:
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return result.stdout


def render_overlay(
    path: str | os.PathLike[str], components: Sequence[str | os.PathLike[str]] = ()
) -> list[dict[str, Any]]:
    """Renders the kustomization at `path` (optionally with extra kustomize components) to objects."""
    overlay = Path(path).resolve()
    if not components:
        text = _kustomize(overlay)
    else:
        # kustomize accepts only relative paths to other kustomizations, so the wrapper lives in a
        # temporary directory and points back at the overlay and components relatively.
        with tempfile.TemporaryDirectory(prefix="vaultsync-kustomize-") as tmp:
            wrapper = Path(tmp)
            kustomization = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(overlay, wrapper)],
                "components": [os.path.relpath(Path(c).resolve(), wrapper) for c in components],
            }
            (wrapper / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
            text = _kustomize(wrapper)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(
    objects: Sequence[dict[str, Any]], kind: str, name: str, namespace: str | None = None
) -> dict[str, Any]:
    """The one rendered object of this kind and name (and namespace, when given)."""
    matches = [
        obj
        for obj in objects
        if obj.get("kind") == kind
        and obj["metadata"]["name"] == name
        and (namespace is None or obj["metadata"].get("namespace") == namespace)
    ]
    if len(matches) != 1:
        raise LookupError(f"expected one {kind} {namespace or '*'}/{name}, found {len(matches)}")
    return matches[0]
