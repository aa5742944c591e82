"""Helpers of the identity and tenancy tests: operators of their own, the docs' commands, leak checks."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.e2e.kube import create_vaultsecret
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.vault_setup_doc import run_block
from vaultsync.devstack import kube_admin
from vaultsync.devstack.stack import LocalStack

# OpenBao/Vault client tokens: s.<24>, b.<...>, r.<...>; HashiCorp's hvs./hvb./hvr. prefixes.
VAULT_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:hv)?[sbr]\.[A-Za-z0-9_-]{20,}")


def assert_no_leaks(text: str, secret_values: set[str], what: str = "the operator log") -> None:
    """No JWT (every JWT starts `eyJ`), no Vault token and no secret value (plain or base64) in `text`."""
    assert "eyJ" not in text, f"{what} holds a JWT"
    token = VAULT_TOKEN.search(text)
    assert token is None, f"{what} holds something shaped like a Vault token at offset {token.start()}"
    leaked = [v for v in secret_values if v in text or base64.b64encode(v.encode()).decode() in text]
    assert leaked == [], f"{what} holds secret values"


def own_namespaces(kube_api: client.ApiClient, *suffixes: str) -> tuple[str, list[str]]:
    """Fresh `p-<random>-<suffix>` namespaces for an operator of a test's own; returns (glob, names)."""
    prefix = f"p-{secrets.token_hex(3)}"
    names = [f"{prefix}-{suffix}" for suffix in suffixes]
    for name in names:
        kube_admin.create_namespace(kube_api, name)
    return f"{prefix}-*", names


def delete_namespaces(kube_api: client.ApiClient, names: list[str]) -> None:
    for name in names:
        kube_admin.delete_namespace(kube_api, name)


@contextmanager
def running_operator(
    env: Mapping[str, str], log: Path, *, wait_ready: bool = True
) -> Iterator[OperatorProcess]:
    """An operator process of the test's own, always stopped (SIGTERM, then SIGKILL) on the way out."""
    process = OperatorProcess(env, log)
    try:
        process.start(wait_ready=wait_ready)
        yield process
    finally:
        process.stop()


class DocRunner:
    """Runs the shell blocks of docs/vault-setup.md against one OpenBao (as root) and the stack's cluster."""

    def __init__(
        self,
        stack: LocalStack,
        home: Path,
        vault: LocalStack | None = None,
        vault_namespace: str | None = None,
    ) -> None:
        self.stack = stack
        self.vault = vault or stack
        self.home = home
        self.vault_namespace = vault_namespace

    def __call__(self, name: str, **variables: str) -> str:
        return run_block(
            name,
            variables=variables,
            vault_addr=self.vault.vault_addr,
            vault_token=self.vault.vault_root_token,
            vault_cacert=self.vault.vault_ca_cert,
            vault_namespace=self.vault_namespace,
            kubeconfig=self.stack.kubeconfig,
            home=self.home,
        )


def create_from_doc(kube_api: client.ApiClient, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Creates a VaultSecret given as a whole manifest (e.g. a YAML block of the docs)."""
    meta = manifest["metadata"]
    return create_vaultsecret(kube_api, meta["namespace"], meta["name"], manifest["spec"])
