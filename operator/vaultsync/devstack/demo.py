"""The demo: a local stack, configured for vaultsync, with the operator running against it.

``python -m vaultsync.devstack`` (``run_demo``) brings everything up, syncs ``secret/demo/app`` into the
Secret ``demo/app-credentials`` and streams the operator's output until Ctrl-C.
``python -m vaultsync.devstack up`` (``run_up``) does the same set-up without starting the operator.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

import vaultsync
from vaultsync.devstack import kube_admin
from vaultsync.devstack.binaries import StackError, find_bao, find_kubectl
from vaultsync.devstack.stack import VAULT_AUDIENCE, LocalStack, pick_free_ports
from vaultsync.devstack.vault_admin import VaultAdmin

OPERATOR_NAMESPACE = "vaultsync-system"
OPERATOR_SERVICE_ACCOUNT = "vaultsync"
REVIEWER_SERVICE_ACCOUNT = "vault-reviewer"
KUBERNETES_AUTH_MOUNT = "kubernetes"
JWT_AUTH_MOUNT = "jwt"
OPERATOR_ROLE = "vaultsync"
DEMO_POLICY = "vaultsync-demo"
DEMO_POLICY_HCL = """\
path "secret/data/demo/*" { capabilities = ["read"] }
path "secret/metadata/demo/*" { capabilities = ["read"] }
"""
DEMO_NAMESPACE = "demo"
DEMO_VAULT_PATH = "demo/app"
DEMO_SECRET = "app-credentials"  # noqa: S105 - a Secret name
REVIEWER_TOKEN_SECONDS = 30 * 24 * 3600
OPERATOR_TOKEN_SECONDS = 24 * 3600
SECRET_TIMEOUT_SECONDS = 60.0
OPERATOR_STOP_SECONDS = 10.0


def say(line: str) -> None:
    print(line, flush=True)


def repo_root() -> Path:
    """The source checkout holding ``crds/`` and ``examples/`` (vaultsync lives in ``<root>/operator``)."""
    return Path(vaultsync.__file__).resolve().parents[2]


def crds_dir() -> Path:
    path = repo_root() / "crds"
    if not any(path.glob("*.yaml")):
        raise StackError(
            f"demo: no CustomResourceDefinitions in {path} (expected crds/vaultsecrets.yaml). "
            "The demo runs from a source checkout of vaultsync: `pip install -e .` in the repository."
        )
    return path


def example_file() -> Path:
    path = repo_root() / "examples" / "demo-vaultsecret.yaml"
    if not path.is_file():
        raise StackError(f"demo: the example VaultSecret {path} is missing (run from a source checkout).")
    return path


# --- set-up shared with the tests -----------------------------------------------------------------------


def configure_kubernetes_auth(
    stack: LocalStack, api: client.ApiClient, vault: VaultAdmin, mount: str = KUBERNETES_AUTH_MOUNT
) -> None:
    """Enable Vault's kubernetes auth method with a reviewer ServiceAccount bound to system:auth-delegator."""
    kube_admin.create_namespace(api, OPERATOR_NAMESPACE)
    kube_admin.create_service_account(api, OPERATOR_NAMESPACE, REVIEWER_SERVICE_ACCOUNT)
    kube_admin.bind_auth_delegator(api, OPERATOR_NAMESPACE, REVIEWER_SERVICE_ACCOUNT)
    reviewer_jwt = kube_admin.request_token(
        api, OPERATOR_NAMESPACE, REVIEWER_SERVICE_ACCOUNT, expiration_seconds=REVIEWER_TOKEN_SECONDS
    )
    vault.enable_kubernetes_auth(stack.api_url, stack.ca_cert.read_text(), reviewer_jwt, mount=mount)


def configure_jwt_auth(stack: LocalStack, vault: VaultAdmin, mount: str = JWT_AUTH_MOUNT) -> None:
    """Enable Vault's jwt auth method verifying service-account tokens with the cluster's public key."""
    vault.enable_jwt_auth(stack.sa_public_key.read_text(), stack.issuer, mount=mount)


@dataclass(frozen=True)
class DemoSetup:
    token_file: Path
    operator_log: Path


def configure_demo(stack: LocalStack, api: client.ApiClient, vault: VaultAdmin) -> DemoSetup:
    """Everything the demo needs except the operator process."""
    say("configuring OpenBao kubernetes auth, policy and role")
    configure_kubernetes_auth(stack, api, vault)
    kube_admin.create_service_account(api, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
    vault.write_policy(DEMO_POLICY, DEMO_POLICY_HCL)
    vault.kubernetes_role(
        OPERATOR_ROLE,
        [OPERATOR_SERVICE_ACCOUNT],
        [OPERATOR_NAMESPACE],
        [DEMO_POLICY],
        audience=VAULT_AUDIENCE,
    )
    vault.kv_put(DEMO_VAULT_PATH, {"username": "demo", "password": secrets.token_urlsafe(18)})
    token_file = write_operator_token(stack, api)
    say(f"applying {crds_dir()}")
    kube_admin.apply_manifests(stack.kubeconfig, crds_dir())
    kube_admin.create_namespace(api, DEMO_NAMESPACE)
    say(f"applying {example_file()}")
    kube_admin.apply_manifests(stack.kubeconfig, example_file())
    return DemoSetup(token_file=token_file, operator_log=stack.workdir / "operator.log")


def write_operator_token(stack: LocalStack, api: client.ApiClient, path: Path | None = None) -> Path:
    """The operator's Vault login JWT, as deploy/ projects it into the pod: a token of its ServiceAccount
    with the audience ``vault`` only, which the API server refuses (default ``<workdir>/operator-token``)."""
    token = kube_admin.request_token(
        api,
        OPERATOR_NAMESPACE,
        OPERATOR_SERVICE_ACCOUNT,
        audiences=[VAULT_AUDIENCE],
        expiration_seconds=OPERATOR_TOKEN_SECONDS,
    )
    path = path or stack.workdir / "operator-token"
    path.touch(mode=0o600)
    path.write_text(token)
    return path


def configure_operator_identity(
    stack: LocalStack,
    api: client.ApiClient,
    vault: VaultAdmin,
    *,
    policy: str,
    policy_hcl: str,
    role: str = OPERATOR_ROLE,
    token_path: Path | None = None,
) -> Path:
    """The operator's own Vault identity: its ServiceAccount, a policy, a kubernetes auth role binding the
    two and requiring the audience ``vault`` (needs ``configure_kubernetes_auth``); returns the file holding
    the ServiceAccount's JWT of that audience."""
    kube_admin.create_service_account(api, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
    vault.write_policy(policy, policy_hcl)
    vault.kubernetes_role(
        role, [OPERATOR_SERVICE_ACCOUNT], [OPERATOR_NAMESPACE], [policy], audience=VAULT_AUDIENCE
    )
    return write_operator_token(stack, api, token_path)


# --- the operator process -------------------------------------------------------------------------------


def operator_env(stack: LocalStack, setup: DemoSetup) -> dict[str, str]:
    metrics_port, health_port = pick_free_ports(2)
    source_dir = str(Path(vaultsync.__file__).resolve().parents[1])
    python_path = os.pathsep.join(p for p in (source_dir, os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        **stack.env(),
        "PYTHONPATH": python_path,
        "VAULTSYNC_TOKEN_FILE": str(setup.token_file),
        "VAULTSYNC_AUTH_ROLE": OPERATOR_ROLE,
        "VAULTSYNC_NAMESPACE": OPERATOR_NAMESPACE,
        "VAULTSYNC_METRICS_PORT": str(metrics_port),
        "VAULTSYNC_HEALTH_PORT": str(health_port),
    }


def start_operator(stack: LocalStack, setup: DemoSetup) -> subprocess.Popen[bytes]:
    say(f"starting the operator: {sys.executable} -m vaultsync run (output in {setup.operator_log})")
    with setup.operator_log.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "vaultsync", "run"],
            env=operator_env(stack, setup),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_operator(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=OPERATOR_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _secret_exists(api: client.ApiClient) -> bool:
    try:
        client.CoreV1Api(api).read_namespaced_secret(DEMO_SECRET, DEMO_NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def wait_for_demo_secret(api: client.ApiClient, operator: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + SECRET_TIMEOUT_SECONDS
    while time.monotonic() < deadline and operator.poll() is None:
        if _secret_exists(api):
            return True
        time.sleep(0.5)
    return False


def _vaultsecret_conditions(api: client.ApiClient) -> list[dict[str, Any]]:
    try:
        obj: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "vaultsync.io", "v1alpha1", DEMO_NAMESPACE, "vaultsecrets", DEMO_SECRET
        )
    except ApiException:
        return []
    status: dict[str, Any] = obj.get("status") or {}
    return list(status.get("conditions") or [])


def report_failure(api: client.ApiClient, operator: subprocess.Popen[bytes], setup: DemoSetup) -> None:
    code = operator.poll()
    if code is not None:
        say(f"\nThe operator exited with code {code}. Its last output ({setup.operator_log}):")
        say(_tail(setup.operator_log))
    else:
        say(f"\nThe Secret {DEMO_NAMESPACE}/{DEMO_SECRET} did not appear in {SECRET_TIMEOUT_SECONDS:.0f}s.")
    conditions = _vaultsecret_conditions(api)
    say(f"VaultSecret {DEMO_NAMESPACE}/{DEMO_SECRET} conditions:")
    for condition in conditions or [{"type": "(none)", "message": "the VaultSecret has no status yet"}]:
        say(
            f"  {condition.get('type')}={condition.get('status', '')} "
            f"reason={condition.get('reason', '')}: {condition.get('message', '')}"
        )
    say(f"See the operator log {setup.operator_log} and the stack logs in {setup.operator_log.parent}.")


def _tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(f"  | {line}" for line in text.splitlines()[-lines:])


# --- what the user sees ---------------------------------------------------------------------------------


def print_environment(stack: LocalStack) -> None:
    say("\nThe local stack is up. In another shell:")
    for name, value in stack.env().items():
        say(f"  export {name}={value}")
    say(f"  export PATH={Path(sys.executable).parent}:$PATH   # kubectl and bao")
    say(f"  # Vault root token: {stack.vault_root_token}   (dev server, fixed and known)")
    say(f"  # logs and audit logs: {stack.workdir}")


def print_demo_instructions(stack: LocalStack) -> None:
    bao = find_bao()
    kubectl = find_kubectl()
    vault_env = f"VAULT_ADDR={stack.vault_addr} VAULT_TOKEN={stack.vault_root_token}"
    if stack.vault_ca_cert:
        vault_env += f" VAULT_CACERT={stack.vault_ca_cert}"
    secret = f"secret -n {DEMO_NAMESPACE} {DEMO_SECRET}"
    say(f"\nThe operator synced {DEMO_VAULT_PATH} into Secret {DEMO_NAMESPACE}/{DEMO_SECRET}.")
    say("Try, in another shell:")
    say(f"  export KUBECONFIG={stack.kubeconfig}")
    say(f"  {kubectl} get vsec,secret -n {DEMO_NAMESPACE}")
    say("Rotate the password in OpenBao; the Secret follows within the 15s refresh interval:")
    say(f"  {vault_env} {bao} kv put secret/{DEMO_VAULT_PATH} username=demo password=new")
    say(f"  {kubectl} get {secret} -o jsonpath='{{.data.password}}' | base64 -d")
    say("Operator output follows. Ctrl-C stops the operator and the whole stack.\n")


def follow(path: Path, alive: Callable[[], bool]) -> None:
    """Copy what is appended to ``path`` to stdout while ``alive()`` (until Ctrl-C)."""
    with path.open("rb") as log:
        log.seek(0, os.SEEK_END)
        while True:
            chunk = log.read()
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            elif not alive():
                return
            else:
                time.sleep(0.3)


def _stack_alive(stack: LocalStack) -> Callable[[], bool]:
    expected = set(stack.running())
    return lambda: set(stack.running()) == expected


# --- entry points ---------------------------------------------------------------------------------------


def run_demo(workdir: Path | None, vault_tls: bool = False) -> int:
    """Start the stack, configure it, run the operator in the foreground until Ctrl-C."""
    try:
        with LocalStack(workdir, vault_tls=vault_tls, crds=[crds_dir()]) as stack:
            return _demo_in_stack(stack)
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("\nstopped")
        return 0


def _demo_in_stack(stack: LocalStack) -> int:
    api = kube_admin.api_client(stack.kubeconfig)
    vault = VaultAdmin.from_stack(stack)
    setup = configure_demo(stack, api, vault)
    operator = start_operator(stack, setup)
    try:
        if not wait_for_demo_secret(api, operator):
            report_failure(api, operator, setup)
            return 1
        print_demo_instructions(stack)
        follow(setup.operator_log, lambda: operator.poll() is None)
        say(f"\nthe operator exited with code {operator.poll()}")
        return 1
    except KeyboardInterrupt:
        say("\nstopping the operator and the stack")
        return 0
    finally:
        stop_operator(operator)


def run_up(workdir: Path | None, vault_tls: bool = False) -> int:
    """Start and configure the stack (everything but the operator) and stay up until Ctrl-C."""
    try:
        with LocalStack(workdir, vault_tls=vault_tls, crds=[crds_dir()]) as stack:
            api = kube_admin.api_client(stack.kubeconfig)
            setup = configure_demo(stack, api, VaultAdmin.from_stack(stack))
            print_environment(stack)
            say("Run the operator against it:")
            say(
                f"  VAULTSYNC_TOKEN_FILE={setup.token_file} VAULTSYNC_AUTH_ROLE={OPERATOR_ROLE} "
                f"VAULTSYNC_NAMESPACE={OPERATOR_NAMESPACE} {sys.executable} -m vaultsync run"
            )
            say("Ctrl-C stops the stack.")
            alive = _stack_alive(stack)
            while alive():
                time.sleep(1)
            say(f"error: a component stopped; see the logs in {stack.workdir}")
            return 1
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("\nstopped")
        return 0
