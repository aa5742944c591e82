"""The alert rules (deploy/prometheus/rules.yaml, included as they are by the chart's PrometheusRule) checked
and unit-tested by Debian's promtool (`promtool check rules`, `promtool test rules tests/prometheus/*.yaml`),
and kept in step with the metrics the operator really exports and with docs/operations.md.

promtool comes from vaultsync.devstack.binaries.find_prometheus (on PATH, or Debian's package unpacked
into the cache on first use), as `python -m vaultsync.devstack prepare` installs it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_render import REPO_ROOT
from vaultsync.devstack.binaries import find_prometheus
from vaultsync.metrics import REGISTRY

RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "rules.yaml"
UNIT_TESTS = sorted((REPO_ROOT / "tests" / "prometheus").glob("*.yaml"))
OPERATIONS = REPO_ROOT / "docs" / "operations.md"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return find_prometheus().promtool


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]


def run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT
    )


def test_promtool_accepts_the_rules(promtool: Path) -> None:
    result = run(promtool, "check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(promtool: Path, unit_test: Path) -> None:
    result = run(promtool, "test", "rules", str(unit_test))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(promtool: Path, tmp_path: Path) -> None:
    """A rule changed for the worse fails its unit test: here "Vault unavailable" without its `unless`
    (it would fire while requests still succeed)."""
    rules = RULES_FILE.read_text()
    broken = re.sub(r"\n\s*unless on \(namespace\)\n[^\n]*outcome=\"ok\"[^\n]*", "", rules, count=1)
    assert broken != rules
    (tmp_path / "deploy" / "prometheus").mkdir(parents=True)
    (tmp_path / "deploy" / "prometheus" / "rules.yaml").write_text(broken)
    (tmp_path / "tests" / "prometheus").mkdir(parents=True)
    copy = tmp_path / "tests" / "prometheus" / "vault.yaml"
    copy.write_text((REPO_ROOT / "tests" / "prometheus" / "vault.yaml").read_text())
    result = run(promtool, "test", "rules", str(copy))
    assert result.returncode != 0
    assert "VaultSyncVaultUnavailable" in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../../deploy/prometheus/rules.yaml"], path
        for case in spec["tests"]:
            for check in case["alert_rule_test"]:
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set()
    assert names - quiet == set()


def exported_metric_names() -> set[str]:
    """Every series name the operator's registry can export (a labelled metric has no sample until used)."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
    }
    names = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_rules_use_only_metrics_the_operator_exports() -> None:
    exported = exported_metric_names()
    assert "vaultsync_vault_requests_total" in exported
    used = {name for alert in alerts() for name in re.findall(r"\bvaultsync_[a-z_]+", alert["expr"])}
    assert used
    assert used - exported == set()


def test_every_alert_is_documented_with_what_to_do() -> None:
    text = OPERATIONS.read_text()
    section = text[text.index("## Alerts") :]
    section = section[: section.index("\n## ", 1)]
    assert "deploy/prometheus/rules.yaml" in section
    for alert in alerts():
        assert f"`{alert['alert']}`" in section, alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
