"""Logs of a real operator: JSON for machines (one object per line, with namespace/name/reason on lines about
a VaultSecret), text for humans (naming the VaultSecret), and never a secret value in either."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.kube import create_vaultsecret, patch_vaultsecret, secret_data, wait_for, wait_ready
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import assert_no_values
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin


def exercise(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    """A sync, a rotation, a drift repair and two failures (NotFound, TemplateError)."""
    first, second = new_value(), new_value()
    vault_admin.kv_put(f"e2e/{namespace}/app", {"password": first, "user": "app"})
    create_vaultsecret(kube_api, namespace, "app", {"path": f"e2e/{namespace}/app"})
    create_vaultsecret(kube_api, namespace, "missing", {"path": f"e2e/{namespace}/missing"})
    create_vaultsecret(
        kube_api,
        namespace,
        "broken",
        {"path": f"e2e/{namespace}/app", "templates": {"url": "{{ password | no_such_filter }}"}},
    )
    wait_ready(kube_api, namespace, "app")
    wait_ready(kube_api, namespace, "missing", status="False", reason="NotFound")
    wait_ready(kube_api, namespace, "broken", status="False", reason="TemplateError")
    vault_admin.kv_put(f"e2e/{namespace}/app", {"password": second, "user": "app"})
    patch_vaultsecret(
        kube_api, namespace, "app", {"metadata": {"annotations": {"vaultsync.io/refresh": "1"}}}
    )
    wait_for(lambda: (secret_data(kube_api, namespace, "app") or {}).get("password") == second.encode())
    client.CoreV1Api(kube_api).delete_namespaced_secret("app", namespace)
    wait_for(lambda: secret_data(kube_api, namespace, "app") is not None, what="drift repaired")


def run_operator(
    stack: LocalStack, token_file: Path, namespace: str, log: Path, log_format: str
) -> OperatorProcess:
    env = {
        **operator_env(stack, token_file, watch=namespace),
        "VAULTSYNC_LOG_FORMAT": log_format,
        "VAULTSYNC_LOG_LEVEL": "DEBUG",
    }
    process = OperatorProcess(env, log)
    process.start()
    return process


def test_json_logs(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    own: str,
    tmp_path: Path,
    new_value: ValueFactory,
    secret_values: set[str],
) -> None:
    process = run_operator(stack, operator_token_file, own, tmp_path / "operator.log", "json")
    try:
        exercise(kube_api, vault_admin, own, new_value)
    finally:
        assert process.stop() == 0
    text = process.log_text()
    assert_no_values(text, secret_values, "the JSON log")

    entries: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} of the log is not JSON: {line[:200]!r}") from None
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        entries.append(entry)
    assert len(entries) >= 8

    # Every line that talks about one of our VaultSecrets names it in fields, not only in its text.
    about = [e for e in entries if f"{own}/" in e["message"]]
    assert about
    for entry in about:
        name = entry["message"].split(f"{own}/", 1)[1].split(":")[0].split()[0]
        assert entry.get("namespace") == own, entry
        assert entry.get("name") == name, entry
    by_name = {(e.get("name"), e.get("reason")) for e in about}
    assert ("app", "Synced") in by_name
    assert ("missing", "NotFound") in by_name
    assert ("broken", "TemplateError") in by_name
    failures = [e for e in about if e.get("reason") == "NotFound"]
    assert all(e["level"] == "warning" for e in failures)
    # The start and the graceful stop are logged too, as JSON.
    messages = [e["message"] for e in entries]
    assert any(m.startswith("vaultsync started") for m in messages)
    assert any(m.startswith("vaultsync stopped") for m in messages)


def test_text_logs_name_the_vaultsecret(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    own: str,
    tmp_path: Path,
    new_value: ValueFactory,
    secret_values: set[str],
) -> None:
    process = run_operator(stack, operator_token_file, own, tmp_path / "operator.log", "text")
    try:
        exercise(kube_api, vault_admin, own, new_value)
    finally:
        assert process.stop() == 0
    text = process.log_text()
    assert_no_values(text, secret_values, "the text log")
    assert f"{own}/app: Secret app created" in text
    assert f"{own}/app: Secret app rotated" in text
    assert f"{own}/missing: NotFound:" in text
    assert f"{own}/broken: TemplateError:" in text
    # Text lines are for humans: not JSON.
    assert not any(line.startswith("{") for line in text.splitlines())
