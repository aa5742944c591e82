"""Renders the Helm chart charts/vaultsync with Helm's own engine (helm-python-sdk), for the chart tests.

`render_chart(values)` returns the rendered objects as dicts, like tests/deploy_render.py does for the
kustomize overlays. VALUES_SETS are the documented values files (charts/vaultsync/ci/*-values.yaml, listed
in the chart's README); OVERLAY_OF names the kustomize overlay each of them must render the same as.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.deploy_render import CLUSTER_WIDE, OPERATOR_NAMESPACE, REPO_ROOT, SINGLE_NAMESPACE

CHART_DIR = REPO_ROOT / "charts" / "vaultsync"
VALUES_DIR = CHART_DIR / "ci"
VALUES_SETS: dict[str, Path] = {
    p.name.removesuffix("-values.yaml"): p for p in sorted(VALUES_DIR.glob("*.yaml"))
}
OVERLAY_OF: dict[str, Path] = {"cluster-wide": CLUSTER_WIDE, "single-namespace": SINGLE_NAMESPACE}
# The release that gives the same object names as deploy/.
RELEASE = "vaultsync"


def values_of(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load(VALUES_SETS[name].read_text())
    return loaded or {}


def render_texts(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = OPERATOR_NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included). Raises HelmValuesError / HelmRenderError."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.render(values or {}, name=name, namespace=namespace)


def render_chart(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = OPERATOR_NAMESPACE
) -> list[dict[str, Any]]:
    texts = render_texts(values, name=name, namespace=namespace)
    return [
        doc
        for path, text in sorted(texts.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def manifest_objects(manifest: str) -> list[dict[str, Any]]:
    """The objects of a release's manifest (as Helm stores it)."""
    return [doc for doc in yaml.safe_load_all(manifest) if doc]
