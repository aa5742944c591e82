"""Pytest plugin: the real local stack (etcd, kube-apiserver, kube-controller-manager, OpenBao).

Enable it with ``pytest_plugins = ["tests.stackfixtures"]`` in the top-level conftest. The stack is started
once per session (the machine has 2 cores) and shared; each test works in its own namespace (``namespace``)
and its own Vault paths. Its work dir, with every log and both audit logs, is under pytest's basetemp
(``stack.workdir``).

Set ``VAULTSYNC_TEST_VAULT_TLS=1`` to run OpenBao with TLS (``stack.vault_ca_cert``, ``VAULT_CACERT``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from vaultsync.devstack import kube_admin
from vaultsync.devstack.demo import (
    JWT_AUTH_MOUNT,
    KUBERNETES_AUTH_MOUNT,
    configure_jwt_auth,
    configure_kubernetes_auth,
    repo_root,
)
from vaultsync.devstack.postgres import PostgresServer
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin
from vaultsync.devstack.vault_engines import DatabaseEngine, PkiEngine


def _crd_dirs() -> list[Path]:
    """The repo's CRDs, installed before the controller-manager starts so that its garbage collector
    knows the VaultSecret kind at once (it looks for new kinds only every 30 s)."""
    crds = repo_root() / "crds"
    return [crds] if any(crds.glob("*.yaml")) else []


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A started LocalStack shared by the session; stopped at its end."""
    workdir = tmp_path_factory.mktemp("stack")
    vault_tls = os.environ.get("VAULTSYNC_TEST_VAULT_TLS", "") not in ("", "0", "false")
    with LocalStack(workdir, vault_tls=vault_tls, crds=_crd_dirs()) as started:
        yield started


@pytest.fixture(scope="session")
def vault_admin(stack: LocalStack) -> Iterator[VaultAdmin]:
    """Root-token administration of the stack's OpenBao."""
    admin = VaultAdmin.from_stack(stack)
    yield admin
    admin.close()


@pytest.fixture(scope="session")
def kube_api(stack: LocalStack) -> Iterator[client.ApiClient]:
    """A kubernetes ApiClient with the stack's admin credentials."""
    api = kube_admin.api_client(stack.kubeconfig)
    yield api
    api.close()


@pytest.fixture(scope="session")
def vault_kubernetes_auth(stack: LocalStack, kube_api: client.ApiClient, vault_admin: VaultAdmin) -> str:
    """OpenBao's kubernetes auth method, configured with a reviewer ServiceAccount; returns its mount."""
    configure_kubernetes_auth(stack, kube_api, vault_admin)
    return KUBERNETES_AUTH_MOUNT


@pytest.fixture(scope="session")
def vault_jwt_auth(stack: LocalStack, vault_admin: VaultAdmin) -> str:
    """OpenBao's jwt auth method, verifying service-account tokens offline; returns its mount."""
    configure_jwt_auth(stack, vault_admin)
    return JWT_AUTH_MOUNT


@pytest.fixture(scope="session")
def postgres(stack: LocalStack) -> PostgresServer:
    """The stack's PostgreSQL, started by the first test that asks for it (stopped with the stack)."""
    return stack.postgres()


@pytest.fixture(scope="session")
def database_engine(postgres: PostgresServer, vault_admin: VaultAdmin) -> DatabaseEngine:
    """OpenBao's database engine at `database/` connected to `postgres`, role `app` (default_ttl 30s,
    max_ttl 60s). Other TTLs: `vault_admin.database_role(NAME, default_ttl=..., max_ttl=...)`."""
    return vault_admin.configure_database_engine(postgres)


@pytest.fixture(scope="session")
def pki_engine(vault_admin: VaultAdmin) -> PkiEngine:
    """OpenBao's pki engine at `pki/` with a root CA, role `app` (ttl 60s) for `*.vaultsync.test`.
    Other TTLs: `vault_admin.pki_role(NAME, ttl=...)`."""
    return vault_admin.configure_pki_engine()


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace ``t-<random>``; deleted after the test (without waiting for it to go away)."""
    name = f"t-{secrets.token_hex(4)}"
    kube_admin.create_namespace(kube_api, name)
    yield name
    kube_admin.delete_namespace(kube_api, name)
