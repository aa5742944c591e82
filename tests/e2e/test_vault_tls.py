"""TLS to Vault (VAULT_CACERT), against a second OpenBao that serves only HTTPS (`bao server -dev -dev-tls`).

That OpenBao is configured only with the commands of docs/vault-setup.md (kubernetes and jwt auth methods,
the operator's role, one jwt tenant), run by `bao` over TLS with `VAULT_CACERT`: the docs are what this test
runs. An operator with the right CA syncs; one with another CA, or an address where nothing listens, reports
`VaultUnavailable` with a message that says what to fix.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from kubernetes import client

from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.identity_support import (
    DocRunner,
    assert_no_leaks,
    create_from_doc,
    delete_namespaces,
    own_namespaces,
    running_operator,
)
from tests.e2e.kube import create_vaultsecret, get_secret, secret_data, wait_ready
from tests.e2e.vault_setup_doc import yaml_block
from vaultsync.devstack import kube_admin
from vaultsync.devstack.demo import OPERATOR_ROLE
from vaultsync.devstack.stack import LocalStack, pick_free_ports
from vaultsync.devstack.vault_admin import VaultAdmin


@pytest.fixture(scope="module")
def tls_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A second OpenBao dev server, HTTPS only, with its own CA (`vault_ca_cert`) and audit log."""
    vault = LocalStack(tmp_path_factory.mktemp("tls-vault"), vault_tls=True)
    try:
        vault.start_vault_only()
        assert vault.vault_addr.startswith("https://")
        assert vault.vault_ca_cert is not None
        yield vault
    finally:
        vault.stop()


@pytest.fixture(scope="module")
def configured_by_the_docs(
    stack: LocalStack,
    tls_vault: LocalStack,
    operator_token_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> DocRunner:
    """The docs' sections 1-3 run against the TLS OpenBao (with VAULT_CACERT), for the stack's cluster."""
    run = DocRunner(stack, tmp_path_factory.mktemp("doc-home"), vault=tls_vault)
    run("kubernetes-auth", KUBERNETES_HOST=stack.api_url, KUBERNETES_CA_FILE=str(stack.ca_cert))
    run("jwt-auth", SA_PUBLIC_KEY_FILE=str(stack.sa_public_key))
    run("operator-role")
    assert OPERATOR_ROLE == "vaultsync"  # the role the docs create, which the e2e operators log in with
    return run


def _tls_env(stack: LocalStack, token_file: Path, watch: str, addr: str, cacert: Path) -> dict[str, str]:
    return {
        **operator_env(stack, token_file, watch=watch),
        "VAULT_ADDR": addr,
        "VAULT_CACERT": str(cacert),
    }


def test_tls_with_the_right_ca_syncs_both_identities(
    stack: LocalStack,
    tls_vault: LocalStack,
    configured_by_the_docs: DocRunner,
    kube_api: client.ApiClient,
    operator_token_file: Path,
    new_value: ValueFactory,
    secret_values: set[str],
    tmp_path: Path,
) -> None:
    glob, (namespace,) = own_namespaces(kube_api, "tls")
    admin = VaultAdmin.from_stack(tls_vault)
    try:
        kube_admin.wait_for_service_account(kube_api, namespace, "default")
        for block in ("tenant-serviceaccount", "tenant-policy", "tenant-jwt-role"):
            configured_by_the_docs(block, TENANT_NS=namespace)
        shared, tenant = new_value(), new_value()
        admin.kv_put(f"shared/{namespace}/cfg", {"value": shared})
        admin.kv_put(f"tenants/{namespace}/db", {"password": tenant})
        assert tls_vault.vault_ca_cert is not None
        env = _tls_env(stack, operator_token_file, glob, tls_vault.vault_addr, tls_vault.vault_ca_cert)
        with running_operator(env, tmp_path / "operator.log") as operator:
            # The operator's own identity (kubernetes method, docs section 3) ...
            create_vaultsecret(kube_api, namespace, "cfg", {"path": f"shared/{namespace}/cfg"})
            # ... and the namespace's own ServiceAccount (jwt method, the docs' example).
            create_from_doc(kube_api, yaml_block("vaultsecret-jwt", {"team-b": namespace}))
            wait_ready(kube_api, namespace, "cfg", timeout=60)
            wait_ready(kube_api, namespace, "db", timeout=60)
            assert secret_data(kube_api, namespace, "cfg") == {"value": shared.encode()}
            assert secret_data(kube_api, namespace, "db") == {"password": tenant.encode()}
        # Both were read from the TLS OpenBao (its own audit log), with both methods.
        audit = tls_vault.vault_audit_log.read_text()
        assert '"path":"auth/kubernetes/login"' in audit
        assert '"path":"auth/jwt/login"' in audit
        assert f'"path":"secret/data/tenants/{namespace}/db"' in audit
        assert_no_leaks(operator.log_text(), secret_values)
    finally:
        admin.close()
        delete_namespaces(kube_api, [namespace])


def test_wrong_ca_or_no_vault_is_vault_unavailable_with_a_clear_message(
    stack: LocalStack,
    tls_vault: LocalStack,
    configured_by_the_docs: DocRunner,
    kube_api: client.ApiClient,
    operator_token_file: Path,
    tmp_path: Path,
) -> None:
    _, namespaces = own_namespaces(kube_api, "badca", "nobody")
    bad_ca, nobody = namespaces
    (free_port,) = pick_free_ports(1)
    cases = [
        # Another CA (the cluster's) than the one that signed OpenBao's certificate.
        (bad_ca, tls_vault.vault_addr, stack.ca_cert, ["TLS verification", "VAULT_CACERT"]),
        # Nothing listens there.
        (nobody, f"https://127.0.0.1:{free_port}", stack.ca_cert, ["cannot reach Vault", "VAULT_ADDR"]),
    ]
    try:
        for namespace, addr, cacert, expected in cases:
            env = _tls_env(stack, operator_token_file, namespace, addr, cacert)
            with running_operator(env, tmp_path / f"{namespace}.log") as operator:
                create_vaultsecret(kube_api, namespace, "cfg", {"path": f"shared/{namespace}/cfg"})
                condition = wait_ready(
                    kube_api, namespace, "cfg", status="False", reason="VaultUnavailable", timeout=60
                )
                for words in expected:
                    assert words in condition["message"], condition["message"]
                assert addr in condition["message"]
                assert "Traceback" not in operator.log_text()
                assert get_secret(kube_api, namespace, "cfg") is None
    finally:
        delete_namespaces(kube_api, namespaces)


def test_vault_namespace_setting_and_per_vaultsecret_override(
    stack: LocalStack,
    tls_vault: LocalStack,
    configured_by_the_docs: DocRunner,
    kube_api: client.ApiClient,
    operator_token_file: Path,
    new_value: ValueFactory,
    secret_values: set[str],
    tmp_path: Path,
) -> None:
    """VAULT_NAMESPACE (all VaultSecrets) and spec.auth.vaultNamespace (one) log in and read inside a Vault
    namespace, set up with the docs' commands run with VAULT_NAMESPACE. The same path holds other values in
    the root namespace, so the Secret shows which namespace was read."""
    vault_namespace = f"team-{secrets.token_hex(2)}"
    admin = VaultAdmin.from_stack(tls_vault)
    admin.client.adapter.post(f"/v1/sys/namespaces/{vault_namespace}")
    assert tls_vault.vault_ca_cert is not None
    inside = hvac.Client(
        url=tls_vault.vault_addr, token="root", verify=str(tls_vault.vault_ca_cert), namespace=vault_namespace
    )
    run = DocRunner(stack, tmp_path / "doc-home", vault=tls_vault, vault_namespace=vault_namespace)
    run("namespace-kv")
    run("kubernetes-auth", KUBERNETES_HOST=stack.api_url, KUBERNETES_CA_FILE=str(stack.ca_cert))
    run("operator-role")
    _, (by_setting, by_spec) = own_namespaces(kube_api, "nssetting", "nsspec")
    values: dict[tuple[str, str], str] = {}
    try:
        for namespace in (by_setting, by_spec):
            for where in ("root", "inside"):
                values[namespace, where] = new_value(where)
            admin.kv_put(f"shared/{namespace}/cfg", {"value": values[namespace, "root"]})
            inside.secrets.kv.v2.create_or_update_secret(
                path=f"shared/{namespace}/cfg", secret={"value": values[namespace, "inside"]}
            )
        addr, cacert = tls_vault.vault_addr, tls_vault.vault_ca_cert

        env = {
            **_tls_env(stack, operator_token_file, by_setting, addr, cacert),
            "VAULT_NAMESPACE": vault_namespace,
        }
        with running_operator(env, tmp_path / "setting.log") as operator:
            create_vaultsecret(kube_api, by_setting, "cfg", {"path": f"shared/{by_setting}/cfg"})
            wait_ready(kube_api, by_setting, "cfg", timeout=60)
            assert secret_data(kube_api, by_setting, "cfg") == {
                "value": values[by_setting, "inside"].encode()
            }
        assert_no_leaks(operator.log_text(), secret_values)

        # spec.auth.vaultNamespace for the operator's own identity: only with the setting that allows it.
        env = {
            **_tls_env(stack, operator_token_file, by_spec, addr, cacert),
            "VAULTSYNC_ALLOW_DEFAULT_IDENTITY_OVERRIDES": "true",
        }
        with running_operator(env, tmp_path / "spec.log") as operator:
            path = f"shared/{by_spec}/cfg"
            create_vaultsecret(
                kube_api, by_spec, "inside", {"path": path, "auth": {"vaultNamespace": vault_namespace}}
            )
            create_vaultsecret(kube_api, by_spec, "root", {"path": path})
            wait_ready(kube_api, by_spec, "inside", timeout=60)
            wait_ready(kube_api, by_spec, "root", timeout=60)
            assert secret_data(kube_api, by_spec, "inside") == {"value": values[by_spec, "inside"].encode()}
            assert secret_data(kube_api, by_spec, "root") == {"value": values[by_spec, "root"].encode()}
        assert_no_leaks(operator.log_text(), secret_values)
    finally:
        admin.close()
        inside.adapter.close()
        delete_namespaces(kube_api, [by_setting, by_spec])
