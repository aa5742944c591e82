"""The documentation cannot drift from the CRD: every field the schema has appears in docs/api.md."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def field_paths(node: dict[str, Any], prefix: str) -> Iterator[str]:
    for name, child in (node.get("properties") or {}).items():
        if name == "kopf":
            continue
        yield f"{prefix}{name}"
        if child.get("type") == "object":
            yield from field_paths(child, f"{prefix}{name}.")
        if child.get("type") == "array" and "items" in child:
            yield from field_paths(child["items"], f"{prefix}{name}[].")


def test_every_crd_field_is_documented_in_api_md() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "vaultsecrets.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    paths = [*field_paths(schema["spec"], "spec."), *field_paths(schema["status"], "status.")]
    assert len(paths) > 30
    api_md = (ROOT / "docs" / "api.md").read_text()
    assert [p for p in paths if f"`{p}`" not in api_md] == []


def test_every_condition_reason_is_documented() -> None:
    from vaultsync.core import errors
    from vaultsync.engine.engine import INTERNAL_ERROR, KUBERNETES_ERROR

    reasons = [v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)]
    reasons += [KUBERNETES_ERROR, INTERNAL_ERROR]
    api_md = (ROOT / "docs" / "api.md").read_text()
    assert [r for r in reasons if f"`{r}`" not in api_md] == []
