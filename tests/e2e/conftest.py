"""End-to-end fixtures: the real operator process against the real local stack (started once per session)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import own_namespace
from vaultsync.devstack.demo import configure_operator_identity
from vaultsync.devstack.operator_process import operator_env as devstack_operator_env
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

E2E_POLICY = "vaultsync-e2e"
E2E_POLICY_HCL = """\
path "secret/data/e2e/*" { capabilities = ["read"] }
path "kv1/e2e/*" { capabilities = ["read"] }
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def operator_token_file(
    stack: LocalStack, kube_api: client.ApiClient, vault_admin: VaultAdmin, vault_kubernetes_auth: str
) -> Path:
    """Vault configured for the operator's own identity (role `vaultsync`, requiring the audience `vault`);
    returns its token file, a token of that audience only (as deploy/ projects it), which the API server
    refuses."""
    token_file = configure_operator_identity(
        stack, kube_api, vault_admin, policy=E2E_POLICY, policy_hcl=E2E_POLICY_HCL
    )
    vault_admin.enable_kv("kv1", 1)
    return token_file


SHARED_OPERATOR_NAMESPACES = "t-*"


def operator_env(
    stack: LocalStack, token_file: Path, watch: str = SHARED_OPERATOR_NAMESPACES
) -> dict[str, str]:
    """The environment of an operator process. The session's shared operator watches the `t-*` namespaces
    of the `namespace` fixture; a test that runs an operator of its own (restarts, kills, other settings)
    gives it namespaces of another prefix (`p-...`) so that the two never reconcile the same objects."""
    return {
        **devstack_operator_env(stack, token_file, watch=watch),
        "VAULTSYNC_BACKOFF_MAX": "5s",
        # A test that breaks an identity and then fixes it waits at most this for the next login attempt.
        "VAULTSYNC_LOGIN_BACKOFF_BASE": "1s",
        "VAULTSYNC_LOGIN_BACKOFF_MAX": "5s",
        "VAULTSYNC_LOG_LEVEL": "DEBUG",
    }


@pytest.fixture(scope="session")
def operator(
    stack: LocalStack, operator_token_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator shared by the session's tests (each test works in its own namespace)."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(operator_env(stack, operator_token_file), log)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def secret_values() -> set[str]:
    """Every secret value a test wrote to Vault: none of them may appear in the operator's log."""
    return set()


@pytest.fixture
def new_value(secret_values: set[str]) -> ValueFactory:
    return ValueFactory(secret_values)


class ValueFactory:
    """Makes distinctive secret values and remembers them for the leak checks."""

    def __init__(self, registry: set[str]) -> None:
        self.registry = registry

    def __call__(self, prefix: str = "s3cr3t") -> str:
        value = f"{prefix}-{secrets.token_hex(8)}"
        self.registry.add(value)
        return value


@pytest.fixture
def own(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh `p-<random>` namespace for an operator of the test's own (never the shared `t-*` ones)."""
    with own_namespace(kube_api) as name:
        yield name
