"""The Helm chart really installed and upgraded by Helm's own engine (helm-python-sdk) into the local API
server (Kubernetes 1.20), and the operator process then run with the token of the ServiceAccount the chart
created, so the chart's RBAC is exercised by every kind of request the operator makes:

* values the schema refuses never reach the cluster;
* revision 1, namespaced (`watch.namespaces: [<ns>]`): Roles only; the operator syncs, rotates, restarts
  a workload, repairs drift, renames, merges, logs in as a namespace ServiceAccount and leads, without one
  refused request;
* revision 2, cluster-wide (`watch.namespaces: []`): the ClusterRole replaces the Roles (Helm deletes them),
  and the operator serves a namespace that revision 1 did not grant;
* uninstall removes the cluster-scoped objects.

A 1.20 API server has no policy/v1: the chart picks policy/v1beta1 for the PodDisruptionBudget from the
server's APIs, which the install proves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.chart_render import CHART_DIR, manifest_objects
from tests.e2e.conftest import ValueFactory, operator_env
from tests.e2e.kube import create_vaultsecret, wait_for, wait_ready
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.ops_support import delete_cluster_objects, lease_holder, own_namespace, parse_metrics, value
from tests.e2e.test_deploy_server import exercise
from vaultsync.devstack import kube_admin
from vaultsync.devstack.demo import OPERATOR_ROLE
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

Obj = dict[str, Any]


def kubeconfig_for(
    stack: LocalStack, kube_api: client.ApiClient, namespace: str, name: str, path: Path
) -> Path:
    """A kubeconfig with a TokenRequest token of the chart's ServiceAccount (which must exist: the chart
    created it; nothing is created here)."""
    token = kube_admin.request_token(kube_api, namespace, name, expiration_seconds=3600)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": stack.api_url, "certificate-authority": str(stack.ca_cert)},
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": name}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def deployment_env(objects: list[Obj]) -> dict[str, str | None]:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def run_operator_as_the_chart(
    stack: LocalStack,
    kube_api: client.ApiClient,
    token_file: Path,
    objects: list[Obj],
    operator_ns: str,
    watch: str,
    tmp_path: Path,
    log_name: str,
) -> OperatorProcess:
    """The operator process with the chart's ServiceAccount as its Kubernetes identity and the settings
    of the rendered Deployment (VAULTSYNC_NAMESPACE comes from the pod there: the release namespace)."""
    service_account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    kubeconfig = kubeconfig_for(
        stack, kube_api, operator_ns, service_account, tmp_path / f"{log_name}.kubeconfig"
    )
    rendered = deployment_env(objects)
    env = {
        **operator_env(stack, token_file, watch=watch),
        **{k: v for k, v in rendered.items() if v is not None and not k.endswith("_PORT")},
        "KUBECONFIG": str(kubeconfig),
        "VAULTSYNC_NAMESPACE": operator_ns,
        "VAULTSYNC_LOG_FORMAT": "text",
        "VAULTSYNC_LOG_LEVEL": "DEBUG",
    }
    # An operator outside a pod reads its Vault JWT from the session's token file, not the pod's path.
    env["VAULTSYNC_TOKEN_FILE"] = str(token_file)
    if watch:
        env["VAULTSYNC_WATCH_NAMESPACES"] = watch
    process = OperatorProcess(env, tmp_path / f"{log_name}.log")
    process.start()
    return process


def assert_nothing_refused(process: OperatorProcess) -> None:
    samples = parse_metrics(process.metrics())
    refused = {
        s.labels["code"]: s.value
        for s in samples
        if s.name == "vaultsync_kubernetes_api_errors_total" and s.labels["code"] in ("401", "403")
    }
    assert refused == {}, refused
    assert value(samples, "vaultsync_leader") == 1


def assert_log_has_no_refusal(process: OperatorProcess) -> None:
    log = process.log_text()
    for refusal in ("Forbidden", "forbidden", "Unauthorized", "permissions"):
        assert refusal not in log, [line for line in log.splitlines() if refusal in line][:5]


@pytest.fixture
def helm_config(stack: LocalStack, own: str) -> Iterator[helm.Config]:
    with helm.Config(kubeconfig_path=str(stack.kubeconfig), namespace=own) as config:
        yield config


def test_chart_install_upgrade_and_the_operator_under_its_rbac(
    kube_api: client.ApiClient,
    stack: LocalStack,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    own: str,
    helm_config: helm.Config,
    tmp_path: Path,
    new_value: ValueFactory,
) -> None:
    release = f"vs-{own}"
    fullname = f"{release}-vaultsync"
    base_values: Obj = {
        "vault": {"address": stack.vault_addr},
        "auth": {"role": OPERATOR_ROLE},
        "replicas": 2,
        "leaderElection": True,
    }
    rbac = client.RbacAuthorizationV1Api(kube_api)
    with own_namespace(kube_api, prefix=own) as watched, own_namespace(kube_api, prefix=own) as later:
        try:
            # Bad values are refused at install, before anything reaches the cluster.
            with pytest.raises(helm.HelmError) as refused:
                helm_config.install(CHART_DIR, release, {**base_values, "watch": {"namespaces": ["team-*"]}})
            assert "schema" in str(refused.value)
            assert "/watch/namespaces/0" in str(refused.value)
            assert all(r.get("name") != release for r in helm_config.list())
            with pytest.raises(ApiException) as absent:
                client.CoreV1Api(kube_api).read_namespaced_service_account(fullname, own)
            assert absent.value.status == 404

            # Revision 1: namespaced.
            installed = helm_config.install(
                CHART_DIR, release, {**base_values, "watch": {"namespaces": [watched]}}
            )
            assert (installed["revision"], installed["status"]) == (1, "deployed")
            objects = manifest_objects(installed["manifest"])
            kinds = {(o["kind"], o["metadata"].get("namespace")) for o in objects}
            assert ("Role", watched) in kinds
            assert ("ClusterRole", None) in kinds  # the read-only discovery role only
            assert [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"] == [
                f"{fullname}-discovery"
            ]
            pdb = next(o for o in objects if o["kind"] == "PodDisruptionBudget")
            assert pdb["apiVersion"] == "policy/v1beta1"  # a 1.20 server: chosen from its APIs
            assert rbac.read_namespaced_role(fullname, watched).rules
            assert client.CoreV1Api(kube_api).read_namespaced_service_account(fullname, own)

            process = run_operator_as_the_chart(
                stack, kube_api, operator_token_file, objects, own, "", tmp_path, "revision-1"
            )
            try:
                assert process.env["VAULTSYNC_WATCH_NAMESPACES"] == watched  # from the chart's Deployment
                wait_for(lambda: lease_holder(kube_api, own) is not None, timeout=30, what="the Lease")
                exercise(kube_api, vault_admin, watched, new_value)
                assert_nothing_refused(process)
            finally:
                assert process.stop() == 0
            assert_log_has_no_refusal(process)

            # Revision 2: cluster-wide. The Roles of revision 1 go, the ClusterRole comes.
            upgraded = helm_config.upgrade(CHART_DIR, release, {**base_values, "watch": {"namespaces": []}})
            assert (upgraded["revision"], upgraded["status"]) == (2, "deployed")
            objects = manifest_objects(upgraded["manifest"])
            assert "VAULTSYNC_WATCH_NAMESPACES" not in deployment_env(objects)
            assert rbac.read_cluster_role(fullname).rules
            with pytest.raises(ApiException) as gone:
                rbac.read_namespaced_role(fullname, watched)
            assert gone.value.status == 404
            history = helm_config.history(release)
            assert sorted(r["revision"] for r in history) == [1, 2]

            # Cluster-wide: a glob keeps this operator to the test's namespaces (the chart watches all).
            process = run_operator_as_the_chart(
                stack, kube_api, operator_token_file, objects, own, f"{own}-*", tmp_path, "revision-2"
            )
            try:
                wait_for(lambda: lease_holder(kube_api, own) is not None, timeout=30, what="the Lease")
                # `later` had no grant in revision 1: only the ClusterRole lets the operator serve it.
                exercise(kube_api, vault_admin, later, new_value)
                path = f"e2e/{watched}/again"
                vault_admin.kv_put(path, {"password": new_value()})
                create_vaultsecret(kube_api, watched, "again", {"path": path})
                wait_ready(kube_api, watched, "again", timeout=30)
                assert_nothing_refused(process)
            finally:
                assert process.stop() == 0
            assert_log_has_no_refusal(process)

            helm_config.uninstall(release)
            for read in (
                lambda: rbac.read_cluster_role(fullname),
                lambda: rbac.read_cluster_role(f"{fullname}-discovery"),
            ):
                with pytest.raises(ApiException) as removed:
                    read()
                assert removed.value.status == 404
            assert all(r.get("name") != release for r in helm_config.list())
        finally:
            with contextlib.suppress(helm.HelmError):
                helm_config.uninstall(release, ignore_not_found=True)
            delete_cluster_objects(
                kube_api, [fullname, f"{fullname}-discovery"], [fullname, f"{fullname}-discovery"]
            )
