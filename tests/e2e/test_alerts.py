"""A real Prometheus (Debian's, from vaultsync.devstack.binaries.find_prometheus) scrapes the real
operator's metrics endpoint and evaluates the shipped alert rules (deploy/prometheus/rules.yaml): OpenBao
sealed -> VaultSyncVaultUnavailable goes pending, then firing (Prometheus's /api/v1/alerts); unsealed ->
it resolves.

The rule's expression is the shipped one; only its time constants are scaled down (rate windows 5m -> 10s,
`for: 5m` -> 5s, scrape and evaluation every second) so the test takes seconds, not ten minutes.
Sealing OpenBao affects the session's shared operator too; Vault is unsealed in `finally`.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.deploy_render import REPO_ROOT
from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.kube import create_vaultsecret, wait_for, wait_ready
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import http_get
from vaultsync.devstack.binaries import find_prometheus
from vaultsync.devstack.stack import LocalStack, pick_free_ports
from vaultsync.devstack.vault_admin import VaultAdmin

RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "rules.yaml"
ALERT = "VaultSyncVaultUnavailable"


def scaled_rules() -> dict[str, Any]:
    """The shipped rules, with the one under test on a test-sized clock."""
    rules = yaml.safe_load(RULES_FILE.read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == ALERT]
    expr = rule["expr"]
    assert expr.count("[5m]") == 2 and rule["for"] == "5m", "the rule changed: update the scaling here"
    rule["expr"] = expr.replace("[5m]", "[10s]")
    rule["for"] = "5s"
    return rules


class Prometheus:
    def __init__(self, workdir: Path, target: str, namespace: str) -> None:
        (self.port,) = pick_free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rules.yaml").write_text(yaml.safe_dump(scaled_rules(), sort_keys=False))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(workdir / "rules.yaml")],
            "scrape_configs": [
                {
                    "job_name": "vaultsync",
                    # What the Prometheus Operator adds from the Service's namespace.
                    "static_configs": [{"targets": [target], "labels": {"namespace": namespace}}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(find_prometheus().prometheus),
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.ready, timeout=30, what=f"Prometheus to be ready (log: {self.log})")

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-2000:]
        try:
            return http_get(f"{self.url}/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"{self.url}/api/v1/{path}{query}", timeout=5)
        assert status == 200, body
        return json.loads(body)["data"]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def operator_of_own(
    stack: LocalStack, operator_token_file: Path, own: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(operator_env(stack, operator_token_file, watch=own), tmp_path / "operator.log")
    process.start()
    yield process
    process.stop()


def test_vault_unavailable_alert_fires_when_sealed_and_resolves_when_unsealed(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    own: str,
    operator_of_own: OperatorProcess,
    tmp_path: Path,
    new_value: ValueFactory,
) -> None:
    # Reads every 2 s, so that Vault's state shows in the request counters at once.
    path = f"e2e/{own}/watched"
    vault_admin.kv_put(path, {"password": new_value()})
    create_vaultsecret(kube_api, own, "watched", {"path": path, "refreshInterval": "2s"})
    wait_ready(kube_api, own, "watched", timeout=30)

    prometheus = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{operator_of_own.metrics_port}", own)
    try:

        def scraping_ok_reads() -> bool:
            result = prometheus.api(
                "query", query='sum(rate(vaultsync_vault_requests_total{outcome="ok"}[10s])) > 0'
            )["result"]
            return bool(result)

        wait_for(scraping_ok_reads, timeout=30, what="Prometheus to see successful Vault reads")
        # The rule is loaded and healthy, and quiet while Vault answers.
        groups = prometheus.api("rules")["groups"]
        rule = next(r for g in groups for r in g["rules"] if r["name"] == ALERT)
        assert rule["health"] == "ok", rule
        assert prometheus.alerts(ALERT) == []

        stack.seal_vault()
        try:
            states: list[str] = []

            def state_is(wanted: str) -> bool:
                alerts = prometheus.alerts(ALERT)
                if alerts and (not states or states[-1] != alerts[0]["state"]):
                    states.append(alerts[0]["state"])
                return any(a["state"] == wanted for a in alerts)

            wait_for(lambda: state_is("pending"), timeout=45, what=f"{ALERT} pending")
            wait_for(lambda: state_is("firing"), timeout=30, what=f"{ALERT} firing")
            assert states == ["pending", "firing"]
            (firing,) = prometheus.alerts(ALERT)
            assert firing["labels"]["severity"] == "critical"
            assert firing["labels"]["namespace"] == own
            assert "cannot reach Vault" in firing["annotations"]["summary"]
        finally:
            stack.unseal_vault()

        wait_for(lambda: prometheus.alerts(ALERT) == [], timeout=45, what=f"{ALERT} to resolve")
        wait_ready(kube_api, own, "watched", timeout=30)
    finally:
        prometheus.stop()
    log = prometheus.log.read_text()
    assert not re.search(r"level=error", log), log[-2000:]
