"""`vaultsync convert` end to end: manifests of the three peers, converted by the real command, applied with
the real kubectl to the local stack, and synced by the shared operator (issue 14).

VaultSecret is the only kind the operator implements today, so the conversions to VaultDynamicSecret,
VaultPKISecret, VaultConnection and ClusterVaultSecretSet are tested as conversions only
(tests/unit/test_migrate.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from kubernetes import client

from tests.e2e.conftest import ValueFactory
from tests.e2e.kube import secret_data, wait_ready
from vaultsync.devstack.binaries import find_kubectl
from vaultsync.devstack.demo import KUBERNETES_AUTH_MOUNT, OPERATOR_ROLE
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

pytestmark = pytest.mark.usefixtures("operator")


def peer_manifests(namespace: str) -> str:
    """A VSO VaultStaticSecret, an ESO SecretStore + ExternalSecret and a ricoberger VaultSecret, written as
    their documentation writes them, reading this test's Vault paths with the operator's own identity."""
    return yaml.safe_dump_all(
        [
            {
                "apiVersion": "secrets.hashicorp.com/v1beta1",
                "kind": "VaultStaticSecret",
                "metadata": {"name": "from-vso", "namespace": namespace},
                "spec": {
                    "mount": "secret",
                    "type": "kv-v2",
                    "path": f"e2e/{namespace}/vso",
                    "refreshAfter": "30s",
                    "destination": {"name": "from-vso", "create": True},
                },
            },
            {
                "apiVersion": "external-secrets.io/v1",
                "kind": "SecretStore",
                "metadata": {"name": "vault-backend", "namespace": namespace},
                "spec": {
                    "provider": {
                        "vault": {
                            "server": "http://vault.invalid:8200",
                            "path": "secret",
                            "version": "v2",
                            "auth": {
                                "kubernetes": {"mountPath": KUBERNETES_AUTH_MOUNT, "role": OPERATOR_ROLE}
                            },
                        }
                    }
                },
            },
            {
                "apiVersion": "external-secrets.io/v1",
                "kind": "ExternalSecret",
                "metadata": {"name": "from-eso", "namespace": namespace},
                "spec": {
                    "refreshInterval": "15s",
                    "secretStoreRef": {"name": "vault-backend", "kind": "SecretStore"},
                    "target": {"name": "from-eso-secret"},
                    "data": [
                        {
                            "secretKey": "db-password",
                            "remoteRef": {"key": f"e2e/{namespace}/eso", "property": "password"},
                        },
                        {
                            "secretKey": "username",
                            "remoteRef": {"key": f"e2e/{namespace}/eso", "property": "username"},
                        },
                    ],
                },
            },
            {
                "apiVersion": "ricoberger.de/v1alpha1",
                "kind": "VaultSecret",
                "metadata": {"name": "from-ricoberger", "namespace": namespace},
                "spec": {"path": f"kv1/e2e/{namespace}/rico", "keys": ["foo"], "type": "Opaque"},
            },
        ]
    )


def test_converted_peer_objects_apply_and_sync(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    vso_value, eso_password, eso_user, rico = new_value(), new_value(), new_value(), new_value()
    vault_admin.kv_put(f"e2e/{namespace}/vso", {"token": vso_value})
    vault_admin.kv_put(f"e2e/{namespace}/eso", {"password": eso_password, "username": eso_user, "other": "x"})
    vault_admin.kv1_put(f"e2e/{namespace}/rico", {"foo": rico, "bar": "not copied"})

    converted = subprocess.run(
        [sys.executable, "-m", "vaultsync", "convert", "--no-connections", "--kv1-mount", "kv1"],
        input=peer_manifests(namespace),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert converted.returncode == 0, converted.stderr
    assert "not mapped" not in converted.stderr
    objects = list(yaml.safe_load_all(converted.stdout))
    assert sorted(o["metadata"]["name"] for o in objects) == ["from-eso", "from-ricoberger", "from-vso"]
    assert {o["kind"] for o in objects} == {"VaultSecret"}

    applied = subprocess.run(
        [str(find_kubectl()), "--kubeconfig", str(stack.kubeconfig), "apply", "-f", "-"],
        input=converted.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    for name in ("from-vso", "from-eso", "from-ricoberger"):
        wait_ready(kube_api, namespace, name, timeout=60)
    assert secret_data(kube_api, namespace, "from-vso") == {"token": vso_value.encode()}
    assert secret_data(kube_api, namespace, "from-eso-secret") == {
        "db-password": eso_password.encode(),
        "username": eso_user.encode(),
    }
    assert secret_data(kube_api, namespace, "from-ricoberger") == {"foo": rico.encode()}
