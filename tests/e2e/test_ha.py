"""High availability: real operator processes with leader election (VAULTSYNC_LEADER_ELECTION=true) on the
same namespace. Each process is its own Kubernetes user (a ServiceAccount kubeconfig), so the API server's
audit log says which process wrote each Secret: exactly one syncs at a time, nothing is written twice, a
Vault change made while no replica leads is still rotated, and a standby takes over when the leader is
killed (after the Lease expires) or stopped (at once: the Lease is released).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.kube import create_vaultsecret, secret_data, wait_for, wait_ready
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import (
    Write,
    assert_no_values,
    bind_cluster_role,
    delete_cluster_objects,
    kube_writes,
    lease_holder,
    own_namespace,
    parse_metrics,
    service_account_kubeconfig,
    service_account_user,
    value,
)
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

NAMES = ("s0", "s1", "s2")
LEASE_SECONDS = 15.0  # kube/lease.py LeaderElector defaults
RENEW_SECONDS = 2.0
REFRESH = "2s"


class Replica:
    """One operator process, authenticated as its own ServiceAccount."""

    def __init__(self, label: str, namespace: str, env: dict[str, str], log: Path) -> None:
        self.label = label
        self.user = service_account_user(namespace, f"ha-{label}")
        self.process = OperatorProcess(env, log)

    @property
    def identity(self) -> str:
        assert self.process.process is not None
        return f"{socket.gethostname()}-{self.process.process.pid}"

    def metric(self, name: str, **labels: str) -> float:
        return value(parse_metrics(self.process.metrics()), name, **labels)


@pytest.fixture
def ha(
    kube_api: client.ApiClient, stack: LocalStack, operator_token_file: Path, tmp_path: Path
) -> Iterator[tuple[str, dict[str, Replica]]]:
    with own_namespace(kube_api) as namespace:
        bindings = [f"{namespace}-ha-{label}" for label in "abc"]
        replicas: dict[str, Replica] = {}
        try:
            for label, binding in zip("abc", bindings, strict=True):
                bind_cluster_role(kube_api, binding, "cluster-admin", namespace, f"ha-{label}")
                kubeconfig = service_account_kubeconfig(
                    stack, kube_api, namespace, f"ha-{label}", tmp_path / f"kubeconfig-{label}"
                )
                env = {
                    **operator_env(stack, operator_token_file, watch=namespace),
                    "KUBECONFIG": str(kubeconfig),
                    # The Lease (and the HMAC key) live in the test's own namespace: no other test's
                    # leader election can interfere.
                    "VAULTSYNC_NAMESPACE": namespace,
                    "VAULTSYNC_LEADER_ELECTION": "true",
                }
                replicas[label] = Replica(label, namespace, env, tmp_path / f"operator-{label}.log")
            yield namespace, replicas
        finally:
            for replica in replicas.values():
                replica.process.kill()
            delete_cluster_objects(kube_api, bindings)


def put_all(vault_admin: VaultAdmin, namespace: str, values: dict[str, str]) -> None:
    for name in NAMES:
        vault_admin.kv_put(f"e2e/{namespace}/{name}", {"token": values[name]})


def wait_data(kube_api: client.ApiClient, namespace: str, values: dict[str, str], timeout: float) -> None:
    for name in NAMES:
        wait_for(
            lambda name=name: secret_data(kube_api, namespace, name) == {"token": values[name].encode()},
            timeout=timeout,
            what=f"Secret {name} to hold the new value",
        )


def secret_writes(stack: LocalStack, namespace: str, since: float) -> list[Write]:
    return [
        w
        for w in kube_writes(stack, namespace, since=since)
        if w.resource == "secrets" and w.name in NAMES and w.user.startswith("system:serviceaccount:")
    ]


def assert_one_write_each(writes: list[Write], verb: str, user: str) -> None:
    """Exactly one `verb` per Secret, all by `user`: one replica synced, and nothing was written twice."""
    assert {w.user for w in writes} == {user}, [(w.user, w.verb, w.name) for w in writes]
    assert Counter((w.verb, w.name) for w in writes) == Counter((verb, name) for name in NAMES), writes


def wait_holder(kube_api: client.ApiClient, namespace: str, replica: Replica, timeout: float) -> float:
    wait_for(
        lambda: lease_holder(kube_api, namespace) == replica.identity,
        timeout=timeout,
        interval=0.1,
        what=f"replica {replica.label} to hold the Lease",
    )
    return time.time()


def test_one_leader_syncs_and_a_standby_takes_over(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    ha: tuple[str, dict[str, Replica]],
    new_value: ValueFactory,
    secret_values: set[str],
) -> None:
    namespace, replicas = ha
    a, b, c = replicas["a"], replicas["b"], replicas["c"]
    started = time.time()

    a.process.start()
    wait_holder(kube_api, namespace, a, timeout=30)
    b.process.start()
    wait_for(lambda: "standing by" in b.process.log_text(), timeout=30, what="b to stand by")

    # Both replicas watch; only the leader syncs.
    values = {name: new_value() for name in NAMES}
    put_all(vault_admin, namespace, values)
    for name in NAMES:
        create_vaultsecret(
            kube_api, namespace, name, {"path": f"e2e/{namespace}/{name}", "refreshInterval": REFRESH}
        )
    for name in NAMES:
        wait_ready(kube_api, namespace, name)
    wait_data(kube_api, namespace, values, timeout=30)
    assert_one_write_each(secret_writes(stack, namespace, started), "create", a.user)
    assert (a.metric("vaultsync_leader"), b.metric("vaultsync_leader")) == (1, 0)
    assert b.metric("vaultsync_syncs_total") == 0
    # The standby follows the leader's status in its gauge.
    wait_for(lambda: b.metric("vaultsync_vaultsecrets", ready="True") == len(NAMES), what="b's gauge")

    # A rotation by the leader: one update per Secret.
    rotation = time.time()
    values = {name: new_value() for name in NAMES}
    put_all(vault_admin, namespace, values)
    wait_data(kube_api, namespace, values, timeout=30)
    time.sleep(2 * RENEW_SECONDS)  # a window in which a second writer would show
    assert_one_write_each(secret_writes(stack, namespace, rotation), "update", a.user)

    # SIGKILL the leader; change Vault while no replica leads.
    killed = time.time()
    a.process.kill()
    values = {name: new_value() for name in NAMES}
    put_all(vault_admin, namespace, values)
    took_over = wait_holder(kube_api, namespace, b, timeout=LEASE_SECONDS * 3)
    takeover_after_kill = took_over - killed
    wait_data(kube_api, namespace, values, timeout=30)  # the change made during the gap is not missed
    time.sleep(2 * RENEW_SECONDS)
    assert_one_write_each(secret_writes(stack, namespace, killed), "update", b.user)
    assert b.metric("vaultsync_leader") == 1

    # A change after the takeover is rotated by the new leader.
    after = time.time()
    values = {name: new_value() for name in NAMES}
    put_all(vault_admin, namespace, values)
    wait_data(kube_api, namespace, values, timeout=30)
    time.sleep(2 * RENEW_SECONDS)
    assert_one_write_each(secret_writes(stack, namespace, after), "update", b.user)

    # A new standby; SIGTERM of the leader releases the Lease: the standby takes over at once.
    c.process.start()
    wait_for(lambda: "standing by" in c.process.log_text(), timeout=30, what="c to stand by")
    assert c.metric("vaultsync_leader") == 0
    terminated = time.time()
    assert b.process.process is not None
    b.process.process.terminate()
    took_over = wait_holder(kube_api, namespace, c, timeout=30)
    takeover_after_sigterm = took_over - terminated
    assert b.process.process.wait(30) == 0
    values = {name: new_value() for name in NAMES}
    after_term = time.time()
    put_all(vault_admin, namespace, values)
    wait_data(kube_api, namespace, values, timeout=30)
    time.sleep(2 * RENEW_SECONDS)
    assert_one_write_each(secret_writes(stack, namespace, after_term), "update", c.user)
    assert "released the Lease" in b.process.log_text()

    print(
        f"\ntakeover after SIGKILL of the leader: {takeover_after_kill:.1f}s "
        f"(Lease {LEASE_SECONDS:.0f}s, renew every {RENEW_SECONDS:.0f}s); "
        f"after SIGTERM: {takeover_after_sigterm:.1f}s"
    )
    # The standby waits for the Lease to expire (it cannot tell a dead leader from a slow one) ...
    assert LEASE_SECONDS - RENEW_SECONDS <= takeover_after_kill <= LEASE_SECONDS + 3 * RENEW_SECONDS + 10
    # ... but takes a released Lease at its next attempt.
    assert takeover_after_sigterm <= 2 * RENEW_SECONDS + 3
    for replica in (a, b, c):
        assert_no_values(replica.process.log_text(), secret_values, f"replica {replica.label}'s log")
