"""`vaultsync doctor` against the real stack: a working set-up, and each broken one that the troubleshooting
section of docs/operations.md lists. The command runs as a user would run it (a subprocess with the
settings in its environment); its output must say what is wrong, and never show a token or a value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.tls_proxy import TlsFiles, make_certificates, tls_proxy
from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack, pick_free_ports
from vaultsync.devstack.vault_admin import VaultAdmin

CHECKS = ["address", "tls", "seal", "identity", "audience", "login", "read"]
TOKEN_LIKE = re.compile(r"\b(?:[sb]|hvs|hvb)\.[A-Za-z0-9_-]{16,}|eyJ[A-Za-z0-9_-]{10,}")


@dataclass
class Result:
    code: int
    output: str
    checks: dict[str, tuple[str, str]]

    def status(self) -> list[str]:
        return [self.checks[name][0] for name in CHECKS]

    def message(self, name: str) -> str:
        return self.checks[name][1]


@dataclass
class Setup:
    stack: LocalStack
    env: dict[str, str]
    namespace: str
    values: set[str]

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VAULTSYNC_"))},
            **self.env,
            **(env or {}),
        }
        completed = subprocess.run(
            [sys.executable, "-m", "vaultsync", "doctor", *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = completed.stdout + completed.stderr
        checks: dict[str, tuple[str, str]] = {}
        for line in completed.stdout.splitlines():
            status, name, message = line.split(None, 2)
            checks[name] = (status, message)
        assert list(checks) == CHECKS, output
        # Never a token, a JWT or a secret value.
        assert not TOKEN_LIKE.search(output), output
        assert not [value for value in self.values if value in output], output
        return Result(completed.returncode, output, checks)


@pytest.fixture
def setup(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    namespace: str,
    new_value: ValueFactory,
) -> Iterator[Setup]:
    """The operator's own identity (role vaultsync: reads secret/data/e2e/*), a secret at e2e/<ns>/app, and a
    ServiceAccount `app` of the namespace that role doctor-<ns> binds (reads secret/data/e2e/<ns>/*)."""
    values = {new_value(), new_value()}
    vault_admin.kv_put(
        f"e2e/{namespace}/app", dict(zip(("username", "password"), sorted(values), strict=True))
    )
    vault_admin.kv_put(f"other/{namespace}/app", {"password": new_value()})
    kube_admin.create_service_account(kube_api, namespace, "app")
    kube_admin.create_service_account(kube_api, namespace, "other")
    vault_admin.write_policy(
        f"doctor-{namespace}", f'path "secret/data/e2e/{namespace}/*" {{ capabilities = ["read"] }}\n'
    )
    vault_admin.kubernetes_role(f"doctor-{namespace}", ["app"], [namespace], [f"doctor-{namespace}"])
    env = operator_env(stack, operator_token_file, watch="")
    env.pop("VAULTSYNC_WATCH_NAMESPACES")
    yield Setup(stack, env, namespace, values)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("doctor-tls"))


def vault_port(stack: LocalStack) -> int:
    return int(stack.vault_addr.rsplit(":", 1)[1])


# Working set-ups -----------------------------------------------------------------------------------------


def test_working_setup_with_the_operators_own_identity(setup: Setup) -> None:
    result = setup.run("--path", f"e2e/{setup.namespace}/app")
    assert result.code == 0, result.output
    assert result.status() == ["OK"] * 7
    assert "not used: VAULT_ADDR is http://" in result.message("tls")
    assert "unsealed and active" in result.message("seal")
    assert "the operator's own token file" in result.message("identity")
    assert "system:serviceaccount:vaultsync-system:vaultsync" in result.message("identity")
    assert "as role vaultsync; policies: default, vaultsync-e2e" in result.message("login")
    assert result.message("read").endswith("2 key(s): password, username")
    assert f"read secret/e2e/{setup.namespace}/app (KV v2, version 1)" in result.message("read")


def test_working_setup_with_a_namespace_service_account(setup: Setup) -> None:
    ns = setup.namespace
    result = setup.run(
        "--namespace",
        ns,
        "--service-account",
        "app",
        "--auth-role",
        f"doctor-{ns}",
        "--path",
        f"e2e/{ns}/app",
    )
    assert result.code == 0, result.output
    assert result.status() == ["OK"] * 4 + ["SKIP"] + ["OK"] * 2
    assert f"ServiceAccount {ns}/app (TokenRequest API): subject system:serviceaccount:{ns}:app" in (
        result.message("identity")
    )


def test_without_a_path_the_read_is_skipped(setup: Setup) -> None:
    result = setup.run()
    assert result.code == 0
    assert result.status() == ["OK"] * 6 + ["SKIP"]


def test_working_setup_over_tls(setup: Setup, tls_files: TlsFiles) -> None:
    with tls_proxy(vault_port(setup.stack), tls_files) as address:
        result = setup.run(
            "--path",
            f"e2e/{setup.namespace}/app",
            env={"VAULT_ADDR": address, "VAULT_CACERT": str(tls_files.ca_cert)},
        )
    assert result.code == 0, result.output
    assert result.status() == ["OK"] * 7
    assert f"verified with VAULT_CACERT {tls_files.ca_cert}" in result.message("tls")


# Broken set-ups: one per troubleshooting entry -------------------------------------------------------------


def test_wrong_address(setup: Setup) -> None:
    (port,) = pick_free_ports(1)
    result = setup.run("--path", "x", env={"VAULT_ADDR": f"http://127.0.0.1:{port}"})
    assert result.code == 1
    assert result.status() == ["FAIL"] + ["SKIP"] * 6
    assert f"cannot reach Vault at http://127.0.0.1:{port}" in result.message("address")
    assert "check VAULT_ADDR" in result.message("address")


def test_wrong_ca(setup: Setup, tls_files: TlsFiles) -> None:
    with tls_proxy(vault_port(setup.stack), tls_files) as address:
        # The Kubernetes CA did not sign this Vault's certificate.
        result = setup.run(env={"VAULT_ADDR": address, "VAULT_CACERT": str(setup.stack.ca_cert)})
    assert result.code == 1
    assert result.status() == ["OK", "FAIL"] + ["SKIP"] * 5
    assert "TLS verification of Vault" in result.message("tls")
    assert "set VAULT_CACERT to the CA bundle that signed Vault's certificate" in result.message("tls")


def test_https_to_a_plain_http_vault(setup: Setup, tls_files: TlsFiles) -> None:
    result = setup.run(
        env={
            "VAULT_ADDR": f"https://127.0.0.1:{vault_port(setup.stack)}",
            "VAULT_CACERT": str(tls_files.ca_cert),
        }
    )
    assert result.code == 1
    assert result.checks["tls"][0] == "FAIL"
    assert "TLS handshake" in result.message("tls")
    assert "is Vault serving https at this address" in result.message("tls")


def test_ca_file_missing(setup: Setup, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    result = setup.run(env={"VAULT_ADDR": "https://127.0.0.1:8200", "VAULT_CACERT": str(missing)})
    assert result.code == 1
    assert result.status() == ["SKIP", "FAIL"] + ["SKIP"] * 5
    assert f"cannot load the Vault CA bundle {missing}" in result.message("tls")


def test_sealed(setup: Setup) -> None:
    setup.stack.seal_vault()
    try:
        result = setup.run("--path", f"e2e/{setup.namespace}/app")
    finally:
        setup.stack.unseal_vault()
    assert result.code == 1
    assert result.status() == ["OK", "OK", "FAIL"] + ["SKIP"] * 4
    assert "Vault is sealed" in result.message("seal")
    assert "unseal" in result.message("seal")


def test_unknown_role(setup: Setup) -> None:
    result = setup.run("--auth-role", "no-such-role")
    assert result.code == 1
    assert result.status() == ["OK"] * 5 + ["FAIL", "SKIP"]
    assert "role no-such-role does not exist at auth/kubernetes" in result.message("login")


def test_wrong_auth_mount(setup: Setup) -> None:
    result = setup.run("--auth-mount", "no-such-mount")
    assert result.code == 1
    assert result.checks["login"][0] == "FAIL"
    assert "auth/no-such-mount" in result.message("login")


def test_service_account_not_bound(setup: Setup) -> None:
    ns = setup.namespace
    result = setup.run("--namespace", ns, "--service-account", "other", "--auth-role", f"doctor-{ns}")
    assert result.code == 1
    assert result.status() == ["OK"] * 4 + ["SKIP", "FAIL", "SKIP"]
    assert f"does not bind ServiceAccount {ns}/other" in result.message("login")


def test_service_account_missing(setup: Setup) -> None:
    ns = setup.namespace
    result = setup.run("--namespace", ns, "--service-account", "ghost", "--auth-role", f"doctor-{ns}")
    assert result.code == 1
    assert result.status() == ["OK", "OK", "OK", "FAIL"] + ["SKIP"] * 3
    assert f"ServiceAccount {ns}/ghost does not exist" in result.message("identity")


def test_namespace_may_not_use_the_operators_identity(setup: Setup) -> None:
    result = setup.run(
        "--namespace", setup.namespace, env={"VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES": "platform"}
    )
    assert result.code == 1
    assert result.checks["identity"][0] == "FAIL"
    assert "may not use the operator's own Vault identity" in result.message("identity")


def test_path_missing(setup: Setup) -> None:
    result = setup.run("--path", f"e2e/{setup.namespace}/missing")
    assert result.code == 1
    assert result.status() == ["OK"] * 6 + ["FAIL"]
    assert result.message("read").startswith("NotFound: Vault has no secret at")


def test_path_forbidden(setup: Setup) -> None:
    result = setup.run("--path", f"other/{setup.namespace}/app")
    assert result.code == 1
    assert result.status() == ["OK"] * 6 + ["FAIL"]
    message = result.message("read")
    assert message.startswith("PermissionDenied: Vault denied reading")
    assert "the login's policies are default, vaultsync-e2e: one of them needs" in message
    assert f'path "secret/data/other/{setup.namespace}/app"' in message


def test_kv_version_mismatch(setup: Setup) -> None:
    result = setup.run("--path", f"e2e/{setup.namespace}/app", "--kv", "v1")
    assert result.code == 1
    assert result.checks["read"][0] == "FAIL"
    assert "secret/ is KV v2: set kv: v2" in result.message("read")


def test_a_token_file_the_api_server_accepts(
    setup: Setup, kube_api: client.ApiClient, tmp_path: Path
) -> None:
    """The pod's API-server token as VAULTSYNC_TOKEN_FILE: the audience check fails and says how to fix it
    (and the operator's role, which requires the audience vault, refuses the login)."""
    api_token = kube_admin.request_token(kube_api, "vaultsync-system", "vaultsync", expiration_seconds=600)
    token_file = tmp_path / "api-token"
    token_file.write_text(api_token)
    result = setup.run(env={"VAULTSYNC_TOKEN_FILE": str(token_file)})
    assert result.code == 1
    assert result.checks["identity"][0] == "OK"
    assert result.checks["audience"][0] == "FAIL"
    message = result.message("audience")
    assert f"the token in {token_file}: its audience {setup.stack.issuer} is the Kubernetes API" in message
    assert "projected serviceAccountToken with the audience vault" in message
    assert "audience=vault" in message
    assert result.checks["login"][0] == "FAIL"
    login = result.message("login")
    assert "role vaultsync does not accept the audience of the operator's token file" in login
