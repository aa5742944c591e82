"""Graceful shutdown of a real operator: SIGTERM stops taking work, lets a running sync finish (bounded),
revokes the cached Vault tokens and exits 0 well within the pod's grace period (30 s in deploy/)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.kube import create_vaultsecret, patch_vaultsecret, secret_data, wait_for, wait_ready
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import assert_no_values, parse_metrics, value
from tests.e2e.vault_audit import AuditLog
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

REPO = Path(__file__).resolve().parents[2]
# What the pod gets between SIGTERM and SIGKILL.
POD_GRACE_SECONDS = yaml.safe_load((REPO / "deploy" / "base" / "deployment.yaml").read_text())["spec"][
    "template"
]["spec"]["terminationGracePeriodSeconds"]
SHUTDOWN_BOUND = 15.0


@pytest.fixture
def own_operator(
    stack: LocalStack, operator_token_file: Path, own: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(operator_env(stack, operator_token_file, watch=own), tmp_path / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.kill()


def terminate(process: OperatorProcess, timeout: float = 60.0) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds until the process was gone)."""
    assert process.process is not None
    started = time.monotonic()
    process.process.send_signal(signal.SIGTERM)
    try:
        code = process.process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.process.kill()
        raise AssertionError(f"the operator did not exit within {timeout}s of SIGTERM") from None
    return code, time.monotonic() - started


def test_sigterm_exits_0_quickly_and_revokes_the_vault_token(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    own: str,
    own_operator: OperatorProcess,
    new_value: ValueFactory,
    secret_values: set[str],
) -> None:
    secret = new_value()
    vault_admin.kv_put(f"e2e/{own}/app", {"password": secret})
    create_vaultsecret(kube_api, own, "app", {"path": f"e2e/{own}/app"})
    wait_ready(kube_api, own, "app")
    audit = AuditLog(stack.vault_audit_log)
    mark = audit.mark()

    code, seconds = terminate(own_operator)
    print(f"\nshutdown after SIGTERM (idle operator, one cached token): {seconds:.2f}s, exit code {code}")

    assert code == 0
    assert seconds < SHUTDOWN_BOUND < POD_GRACE_SECONDS
    # The one cached token (the operator's own identity) was revoked, as OpenBao's audit log shows.
    assert len(audit.requests("auth/token/revoke-self", since=mark)) == 1
    log = own_operator.log_text()
    assert "revoked 1 of 1 cached Vault tokens" in log
    assert "vaultsync stopped in" in log
    assert_no_values(log, secret_values, "the operator log")


def test_sigterm_lets_a_running_sync_finish(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    own: str,
    own_operator: OperatorProcess,
    new_value: ValueFactory,
) -> None:
    first, second = new_value(), new_value()
    vault_admin.kv_put(f"e2e/{own}/app", {"password": first})
    create_vaultsecret(kube_api, own, "app", {"path": f"e2e/{own}/app"})
    wait_ready(kube_api, own, "app")
    vault_admin.kv_put(f"e2e/{own}/app", {"password": second})

    stack.pause_vault()
    try:
        # A forced refresh starts a sync whose Vault read now hangs.
        patch_vaultsecret(kube_api, own, "app", {"metadata": {"annotations": {"vaultsync.io/refresh": "1"}}})
        wait_for(
            lambda: value(parse_metrics(own_operator.metrics()), "vaultsync_syncs_running") == 1,
            timeout=30,
            what="a sync in progress",
        )
        assert own_operator.process is not None
        started = time.monotonic()
        own_operator.process.send_signal(signal.SIGTERM)
        time.sleep(2.0)
        # It waits for the running sync rather than exiting at once.
        assert own_operator.process.poll() is None, "the operator exited before its running sync finished"
    finally:
        stack.resume_vault()
    code = own_operator.process.wait(30)
    seconds = time.monotonic() - started
    print(f"\nshutdown with a sync in flight (Vault resumed after 2 s): {seconds:.2f}s, exit code {code}")
    assert code == 0
    assert seconds < SHUTDOWN_BOUND
    # The sync that was running finished: the Secret holds the new value.
    assert secret_data(kube_api, own, "app") == {"password": second.encode()}
    assert "waiting up to 10s for 1 running" in own_operator.log_text()


def test_sigterm_while_vault_hangs_still_exits_within_the_grace_period(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    own: str,
    own_operator: OperatorProcess,
    new_value: ValueFactory,
) -> None:
    vault_admin.kv_put(f"e2e/{own}/app", {"password": new_value()})
    create_vaultsecret(kube_api, own, "app", {"path": f"e2e/{own}/app"})
    wait_ready(kube_api, own, "app")
    stack.pause_vault()
    try:
        patch_vaultsecret(kube_api, own, "app", {"metadata": {"annotations": {"vaultsync.io/refresh": "1"}}})
        wait_for(
            lambda: value(parse_metrics(own_operator.metrics()), "vaultsync_syncs_running") == 1,
            timeout=30,
            what="a sync in progress",
        )
        code, seconds = terminate(own_operator, timeout=POD_GRACE_SECONDS + 10)
    finally:
        stack.resume_vault()
    print(f"\nshutdown while Vault hangs: {seconds:.2f}s, exit code {code}")
    assert code == 0
    # Bounded: 10 s for running syncs, 5 s for token revocation, with time to spare before SIGKILL.
    assert seconds < POD_GRACE_SECONDS - 5
    log = own_operator.log_text()
    assert "vaultsync stopped in" in log


def test_a_startup_failure_exits_1_with_one_clear_json_line(
    stack: LocalStack, operator_token_file: Path, own: str, tmp_path: Path
) -> None:
    """A setting that cannot work (here a CA bundle that does not exist) stops the operator at start: exit
    code 1, the reason in the log, and nothing but JSON lines (no traceback on stderr)."""
    env = {
        **operator_env(stack, operator_token_file, watch=own),
        "VAULT_ADDR": "https://127.0.0.1:8200",
        "VAULT_CACERT": str(tmp_path / "missing-ca.pem"),
        "VAULTSYNC_LOG_FORMAT": "json",
    }
    process = OperatorProcess(env, tmp_path / "operator.log")
    process.start(wait_ready=False)
    assert process.process is not None
    assert process.process.wait(60) == 1
    lines = process.log_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is JSON
    assert any(
        "cannot load the Vault CA bundle" in entry["message"] and entry["level"] == "error"
        for entry in entries
    ), lines
    assert entries[-1]["message"] == "vaultsync stopped: it could not run (ActivityError)"
