"""The operations docs cannot drift from the code: every setting in docs/configuration.md, every metric and
every condition reason in docs/operations.md."""

from __future__ import annotations

import re
from pathlib import Path

from vaultsync.core import errors
from vaultsync.engine.engine import INTERNAL_ERROR, KUBERNETES_ERROR
from vaultsync.metrics import REGISTRY
from vaultsync.settings import SETTINGS

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text()
OPERATIONS = (DOCS / "operations.md").read_text()


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| `"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_every_setting_is_documented_with_its_flag() -> None:
    rows = {row[0].strip("`"): row for row in _table_rows(CONFIGURATION) if len(row) == 4}
    for setting in SETTINGS:
        assert setting.env in rows, f"{setting.env} is missing from docs/configuration.md"
        _, flag, default, meaning = rows[setting.env]
        assert flag == f"`{setting.flag}`", (setting.env, flag)
        assert default and meaning, setting.env


def test_configuration_documents_no_setting_that_does_not_exist() -> None:
    known = {setting.env for setting in SETTINGS}
    documented = {row[0].strip("`") for row in _table_rows(CONFIGURATION) if len(row) == 4}
    assert documented - known == set()
    mentioned = set(re.findall(r"\bVAULTSYNC_[A-Z_]*[A-Z]\b", CONFIGURATION))
    assert mentioned - known == set()


def _exposed_name(name: str, kind: str) -> str:
    return {"counter": f"{name}_total", "info": f"{name}_info"}.get(kind, name)


def test_every_metric_has_help_and_is_documented() -> None:
    families = list(REGISTRY.collect())
    assert len([f for f in families if f.name.startswith("vaultsync_")]) >= 15
    for family in families:
        assert family.documentation.strip(), family.name
        exposed = _exposed_name(family.name, family.type)
        assert f"`{exposed}`" in OPERATIONS, f"{exposed} is not described in docs/operations.md"
    documented = set(re.findall(r"`(vaultsync_[a-z_]+)`", OPERATIONS))
    exposed_names = {_exposed_name(f.name, f.type) for f in families}
    histogram_parts = {f"{f.name}_{part}" for f in families for part in ("bucket", "sum", "count")}
    assert documented - exposed_names - histogram_parts == set()


def test_troubleshooting_has_a_section_for_every_condition_reason() -> None:
    reasons = {getattr(errors, name) for name in errors.__all__ if name.isupper() and name != "SYNCED"} | {
        KUBERNETES_ERROR,
        INTERNAL_ERROR,
    }
    assert len(reasons) == 11
    troubleshooting = OPERATIONS.split("## Troubleshooting by reason", 1)[1]
    sections = dict(re.findall(r"(?m)^### (\w+)\n(.*?)(?=^### |\Z)", troubleshooting, re.S))
    assert set(sections) == reasons
    for reason, body in sections.items():
        for part in ("**Means**", "**Confirm**", "**Fix**"):
            assert part in body, (reason, part)
