"""Small Kubernetes set-up helpers for the demo and the tests (``kubernetes`` client plus ``kubectl``)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vaultsync.devstack.binaries import StackError, find_kubectl

FIELD_MANAGER = "vaultsync-devstack"
AUTH_DELEGATOR = "system:auth-delegator"


def api_client(kubeconfig: Path) -> client.ApiClient:
    """An ApiClient for the stack's admin kubeconfig (token auth, CA-verified)."""
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


def _ignore_conflict(exc: ApiException) -> None:
    if exc.status != 409:
        raise exc


def create_namespace(api: client.ApiClient, name: str, labels: dict[str, str] | None = None) -> None:
    """Create a namespace; an existing one is left as it is."""
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    try:
        client.CoreV1Api(api).create_namespace(body)
    except ApiException as exc:
        _ignore_conflict(exc)


def delete_namespace(api: client.ApiClient, name: str) -> None:
    """Start deleting a namespace (does not wait for the namespace controller to finish)."""
    try:
        client.CoreV1Api(api).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def create_service_account(api: client.ApiClient, namespace: str, name: str) -> None:
    """Create a ServiceAccount; an existing one is left as it is."""
    body = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
    try:
        client.CoreV1Api(api).create_namespaced_service_account(namespace, body)
    except ApiException as exc:
        _ignore_conflict(exc)


def bind_auth_delegator(api: client.ApiClient, namespace: str, service_account: str) -> str:
    """Bind ClusterRole system:auth-delegator (TokenReview) to a ServiceAccount; returns the binding name."""
    name = f"{namespace}-{service_account}-auth-delegator"
    body = client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=name),
        role_ref=client.V1RoleRef(
            api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=AUTH_DELEGATOR
        ),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name=service_account, namespace=namespace)],
    )
    try:
        client.RbacAuthorizationV1Api(api).create_cluster_role_binding(body)
    except ApiException as exc:
        _ignore_conflict(exc)
    return name


def request_token(
    api: client.ApiClient,
    namespace: str,
    service_account: str,
    audiences: Sequence[str] | None = None,
    expiration_seconds: int = 3600,
) -> str:
    """A service-account JWT from the TokenRequest API (audiences default to the API server's issuer)."""
    spec = client.V1TokenRequestSpec(audiences=list(audiences or []), expiration_seconds=expiration_seconds)
    body = client.AuthenticationV1TokenRequest(spec=spec)
    response = client.CoreV1Api(api).create_namespaced_service_account_token(service_account, namespace, body)
    if response.status is None or not response.status.token:
        raise StackError(f"TokenRequest for {namespace}/{service_account} returned no token")
    return str(response.status.token)


def wait_for_service_account(api: client.ApiClient, namespace: str, name: str, timeout: float = 30.0) -> None:
    """Wait until a ServiceAccount exists (e.g. ``default``, made by the controller-manager)."""
    core = client.CoreV1Api(api)

    def exists() -> bool:
        try:
            core.read_namespaced_service_account(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    _wait(exists, timeout, f"ServiceAccount {namespace}/{name} did not appear")


def _wait(condition: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise StackError(f"{failure} within {timeout:.0f}s")
        time.sleep(0.2)


# --- manifests ------------------------------------------------------------------------------------------


def manifest_files(path: Path) -> list[Path]:
    """The YAML files of a file or a directory (sorted, not recursive)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
    return [path]


def render_manifests(kubeconfig: Path, path: Path, timeout: float = 60.0) -> str:
    """The manifests of a file or directory as one YAML stream; a directory with a kustomization.yaml
    is rendered with ``kubectl kustomize``."""
    if path.is_dir() and (path / "kustomization.yaml").is_file():
        return _kubectl(kubeconfig, ["kustomize", str(path)], timeout)
    files = manifest_files(path)
    if not files:
        raise StackError(f"apply: no YAML files in {path}")
    return "\n---\n".join(file.read_text() for file in files)


def crd_names(manifests: str) -> list[str]:
    """Names of the CustomResourceDefinitions in a YAML stream."""
    documents = [doc for doc in yaml.safe_load_all(manifests) if isinstance(doc, dict)]
    return [
        str(doc["metadata"]["name"]) for doc in documents if doc.get("kind") == "CustomResourceDefinition"
    ]


def apply_manifests(kubeconfig: Path, path: Path, timeout: float = 60.0) -> None:
    """Server-side apply a YAML file, a directory of YAML files or a kustomization directory
    (``kubectl apply --server-side``), then wait until its CustomResourceDefinitions are Established."""
    manifests = render_manifests(kubeconfig, path, timeout)
    args = ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", "-"]
    _kubectl(kubeconfig, args, timeout, stdin=manifests, what=str(path))
    names = crd_names(manifests)
    if names:
        api = api_client(kubeconfig)
        try:
            wait_for_crds_established(api, names, timeout)
        finally:
            api.close()  # type: ignore[no-untyped-call]


def _kubectl(
    kubeconfig: Path, args: list[str], timeout: float, stdin: str | None = None, what: str = ""
) -> str:
    command = [str(find_kubectl()), f"--cache-dir={kubeconfig.parent / 'kubectl-cache'}", *args]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    shown = f"kubectl {' '.join(args)}" + (f" < {what}" if what else "")
    try:
        result = subprocess.run(
            command, env=env, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"apply: `{shown}` did not finish within {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise StackError(f"apply: `{shown}` failed:\n{result.stderr.strip()}")
    return result.stdout


def _is_established(crd: Any) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def wait_for_crds_established(api: client.ApiClient, names: Sequence[str], timeout: float = 60.0) -> None:
    """Wait until every named CustomResourceDefinition has condition Established=True."""
    extensions = client.ApiextensionsV1Api(api)

    def established(name: str) -> Callable[[], bool]:
        return lambda: _is_established(extensions.read_custom_resource_definition(name))

    for name in names:
        _wait(established(name), timeout, f"CustomResourceDefinition {name} was not Established")
