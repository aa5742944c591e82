"""A real, throw-away Kubernetes control plane and OpenBao server on 127.0.0.1.

``LocalStack`` runs etcd, kube-apiserver, kube-controller-manager and an OpenBao dev server as child
processes, each on a free port of 127.0.0.1, with every file (certificates, kubeconfigs, logs, audit logs,
etcd data) in one work directory::

    with LocalStack() as stack:
        subprocess.run(["kubectl", "get", "ns"], env={**os.environ, **stack.env()})

Each process writes its output to ``<workdir>/<name>.log``. The processes are stopped by ``stop()`` (also
on a failed start), at interpreter exit and on SIGTERM; if the Python process dies without cleaning up,
the kernel kills them (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

import yaml

from vaultsync.devstack.binaries import StackError, find_bao, find_etcd, find_kube_binaries
from vaultsync.devstack.pki import PkiFiles, generate_pki
from vaultsync.devstack.postgres import PostgresServer

__all__ = ["DEFAULT_ISSUER", "VAULT_AUDIENCE", "LocalStack", "StackError", "pick_free_ports"]

HOST = "127.0.0.1"
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
VAULT_AUDIENCE = "vault"  # the audience of the tokens the operator (and the docs) log in to Vault with
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
CONTROLLERS = "namespace,serviceaccount,serviceaccount-token,garbagecollector,root-ca-cert-publisher"
VAULT_ROOT_TOKEN = "root"  # noqa: S105 - the dev server's fixed, documented root token
STOP_GRACE_SECONDS = 5.0
UNSEAL_KEY_LINE = re.compile(r"^Unseal Key:\s*(\S+)\s*$", re.MULTILINE)
Printer = Callable[[str], None]

AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One event per request (ResponseComplete), so that counting lines counts writes.
    "omitStages": ["RequestReceived"],
    "rules": [
        # The controller-manager's own writes (service-account token Secrets, namespace clean-up) are noise.
        {"level": "None", "users": ["system:kube-controller-manager"]},
        {
            "level": "Metadata",
            "verbs": ["create", "update", "patch", "delete"],
            "resources": [
                {"group": "", "resources": ["secrets"]},
                {"group": "vaultsync.io", "resources": ["vaultsecrets", "vaultsecrets/status"]},
            ],
        },
        {"level": "None"},
    ],
}


def _print_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------------------------


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    log_handle: IO[bytes]
    paused: bool = False

    @property
    def running(self) -> bool:
        return self.popen.poll() is None


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGKILL when the parent thread exits."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))


def _spawn(name: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> _Process:
    handle = log.open("ab")
    # PDEATHSIG fires when the *thread* that forked exits, so only use it from the main thread.
    on_main_thread = threading.current_thread() is threading.main_thread()
    preexec = _die_with_parent if on_main_thread and sys.platform == "linux" else None
    try:
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
            start_new_session=True,  # Ctrl-C in a terminal reaches Python only; stop() ends the children.
            preexec_fn=preexec,
        )
    except OSError as exc:
        handle.close()
        raise StackError(f"{name}: could not start {args[0]}: {exc}") from exc
    return _Process(name, popen, log, handle)


def _terminate(processes: list[_Process]) -> None:
    """SIGTERM to all, then SIGKILL to whatever still runs after STOP_GRACE_SECONDS."""
    for process in processes:
        if process.running:
            if process.paused:
                process.popen.send_signal(signal.SIGCONT)
            process.popen.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()
        process.log_handle.close()


def _thread_states(pid: int) -> list[str]:
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):
            # The state follows the command name, which is in parentheses and may contain spaces.
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
    return states


def _wait_until_stopped(pid: int, timeout: float = 2.0) -> None:
    """SIGSTOP is delivered asynchronously: wait until every thread of ``pid`` is stopped, so that no
    request is answered after ``pause_vault()`` returns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = _thread_states(pid)
        if not states or all(state in ("T", "t") for state in states):
            return
        time.sleep(0.01)


def _log_tail(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if "Unseal Key" not in line and "Root Token" not in line]
    return "\n".join(f"    {line}" for line in kept[-lines:])


def pick_free_ports(count: int, with_next: int = 0) -> list[int]:
    """``count`` distinct free ports of 127.0.0.1; the first ``with_next`` also have port+1 free."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = _bind(0)
            held.append(sock)
            port = int(sock.getsockname()[1])
            if len(ports) < with_next:
                neighbour = _try_bind(port + 1)
                if neighbour is None:
                    continue
                held.append(neighbour)
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, port))
    return sock


def _try_bind(port: int) -> socket.socket | None:
    try:
        return _bind(port)
    except OSError:
        return None


def _http_status(
    port: int, path: str, *, tls: ssl.SSLContext | None = None, token: str | None = None, method: str = "GET"
) -> int | None:
    connection: http.client.HTTPConnection
    if tls is None:
        connection = http.client.HTTPConnection(HOST, port, timeout=3)
    else:
        connection = http.client.HTTPSConnection(HOST, port, timeout=3, context=tls)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        connection.request(method, path, headers=headers)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


# --- safety net -----------------------------------------------------------------------------------------

_LIVE_STACKS: weakref.WeakSet[LocalStack] = weakref.WeakSet()
_safety_net_installed = False


def _stop_all_stacks() -> None:
    for stack in list(_LIVE_STACKS):
        with contextlib.suppress(Exception):
            stack.stop()


def _on_termination_signal(signum: int, _frame: FrameType | None) -> None:
    _stop_all_stacks()
    raise SystemExit(128 + signum)


def _install_safety_net() -> None:
    global _safety_net_installed
    if _safety_net_installed:
        return
    _safety_net_installed = True
    atexit.register(_stop_all_stacks)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _on_termination_signal)


# --- the stack ------------------------------------------------------------------------------------------


@dataclass
class _Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    vault: int  # vault + 1 is OpenBao's cluster port, also free


def _choose_ports() -> _Ports:
    vault, etcd_client, etcd_peer, apiserver = pick_free_ports(4, with_next=1)
    return _Ports(etcd_client=etcd_client, etcd_peer=etcd_peer, apiserver=apiserver, vault=vault)


class LocalStack:
    """etcd + kube-apiserver + kube-controller-manager + OpenBao dev server, for tests and the demo.

    Use it as a context manager, or call ``start()`` and ``stop()``. Ports are chosen when it is created,
    so the public attributes are valid before ``start()``.

    * ``workdir``: where every file goes; default a new temp dir, removed by ``stop()`` unless
      ``keep_workdir`` (a given ``workdir`` is never removed, nor one whose start failed).
    * ``vault_tls``: run OpenBao with ``-dev-tls``; its CA is then ``vault_ca_cert``.
    * ``crds``: manifest files or directories applied before the controller-manager starts, so that its
      garbage collector knows their kinds at once (otherwise it notices new kinds only after ~30-40 s).
    * ``start_timeout``: seconds each component may take to become ready.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        vault_tls: bool = False,
        issuer: str = DEFAULT_ISSUER,
        crds: Sequence[Path] = (),
        start_timeout: float = 60.0,
        keep_workdir: bool = False,
        printer: Printer = _print_stderr,
    ) -> None:
        self._owns_workdir = workdir is None
        self.workdir: Path = Path(tempfile.mkdtemp(prefix="vaultsync-stack-")) if workdir is None else workdir
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._keep_workdir = keep_workdir or not self._owns_workdir
        self._printer = printer
        self._start_timeout = start_timeout
        self._crds = list(crds)
        self._processes: dict[str, _Process] = {}
        self._ports = _choose_ports()
        self._pki: PkiFiles | None = None
        self._vault_log_offset = 0
        self.startup_seconds: dict[str, float] = {}

        self.issuer: str = issuer
        self.api_url: str = f"https://{HOST}:{self._ports.apiserver}"
        self.admin_token: str = secrets.token_urlsafe(32)
        self.kubeconfig: Path = self.workdir / "kubeconfig"
        self.ca_cert: Path = self.workdir / "pki" / "ca.crt"
        self.sa_public_key: Path = self.workdir / "pki" / "sa.pub"
        self.kube_audit_log: Path = self.workdir / "kube-audit.log"
        self.etcd_url: str = f"http://{HOST}:{self._ports.etcd_client}"

        self.vault_tls: bool = vault_tls
        scheme = "https" if vault_tls else "http"
        self.vault_addr: str = f"{scheme}://{HOST}:{self._ports.vault}"
        self.vault_root_token: str = VAULT_ROOT_TOKEN
        self.vault_audit_log: Path = self.workdir / "vault-audit.log"
        self.vault_ca_cert: Path | None = self.workdir / "openbao-tls" / "vault-ca.pem" if vault_tls else None
        self.vault_unseal_key: str | None = None
        self._postgres: PostgresServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start every component and wait until each is ready; on any failure stop what was started."""
        _install_safety_net()
        _LIVE_STACKS.add(self)
        began = time.monotonic()
        try:
            self._start_all()
        except BaseException:
            self._keep_workdir = True  # the error message points at logs in it
            self.stop()
            raise
        self.startup_seconds["total"] = round(time.monotonic() - began, 2)
        self._printer(f"local stack ready in {self.startup_seconds['total']:.1f}s (work dir {self.workdir})")

    def stop(self) -> None:
        """Stop every process this stack started (SIGTERM, then SIGKILL after a few seconds)."""
        order = ["openbao", "kube-controller-manager", "kube-apiserver", "etcd"]
        processes = [self._processes.pop(name) for name in order if name in self._processes]
        _terminate(processes)
        if self._postgres is not None:  # after OpenBao, which holds connections to it
            self._postgres.stop()
            self._postgres = None
        _LIVE_STACKS.discard(self)
        if not self._keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _start_all(self) -> None:
        etcd = find_etcd(self._printer)
        kube = find_kube_binaries(self._printer)
        bao = find_bao()
        self._pki = generate_pki(self.workdir / "pki")
        self._write_config_files()
        self._start_etcd(etcd)
        self._start_vault_process(bao)
        self._timed("etcd", self._wait_etcd)
        self._start_apiserver(kube.apiserver)
        self._timed("openbao", self._wait_vault)
        self._timed("kube-apiserver", self._wait_apiserver)
        self._timed("crds", self._apply_crds)
        self._start_controller_manager(kube.controller_manager)
        self._timed("kube-controller-manager", self._wait_controller_manager)

    def _timed(self, name: str, wait: Callable[[], None]) -> None:
        began = time.monotonic()
        wait()
        self.startup_seconds[name] = round(time.monotonic() - began, 2)

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    # -- configuration files -----------------------------------------------------------------------------

    def _write_config_files(self) -> None:
        self._write_secret_file(
            self.workdir / "tokens.csv", f'{self.admin_token},admin,admin,"system:masters"\n'
        )
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
        self._write_secret_file(self.kubeconfig, self._admin_kubeconfig())
        self._write_secret_file(self.workdir / "controller-manager.kubeconfig", self._cm_kubeconfig())
        (self.workdir / "openbao.hcl").write_text(self._vault_config())

    @staticmethod
    def _write_secret_file(path: Path, text: str) -> None:
        path.touch(mode=0o600)
        path.write_text(text)

    def _kubeconfig(self, user: dict[str, str]) -> str:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "vaultsync-dev",
                    "cluster": {"server": self.api_url, "certificate-authority": str(self.ca_cert)},
                }
            ],
            "users": [{"name": "vaultsync-dev", "user": user}],
            "contexts": [
                {"name": "vaultsync-dev", "context": {"cluster": "vaultsync-dev", "user": "vaultsync-dev"}}
            ],
            "current-context": "vaultsync-dev",
        }
        return yaml.safe_dump(config, sort_keys=False)

    def _admin_kubeconfig(self) -> str:
        return self._kubeconfig({"token": self.admin_token})

    def _cm_kubeconfig(self) -> str:
        assert self._pki is not None
        pki = self._pki
        return self._kubeconfig(
            {
                "client-certificate": str(pki.controller_manager_cert),
                "client-key": str(pki.controller_manager_key),
            }
        )

    def _vault_config(self) -> str:
        return (
            'audit "file" "file" {\n'
            "  options {\n"
            f"    file_path = {json.dumps(str(self.vault_audit_log))}\n"
            "  }\n"
            "}\n"
        )

    # -- etcd --------------------------------------------------------------------------------------------

    def _start_etcd(self, binary: Path) -> None:
        peer = f"http://{HOST}:{self._ports.etcd_peer}"
        args = [
            str(binary),
            "--name=vaultsync-dev",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=vaultsync-dev={peer}",
            "--initial-cluster-state=new",
            "--log-level=warn",
            "--logger=zap",
        ]
        env = {**os.environ}
        if os.uname().machine in ("aarch64", "arm64"):
            env["ETCD_UNSUPPORTED_ARCH"] = "arm64"
        self._printer(f"starting etcd on {self.etcd_url}")
        self._processes["etcd"] = _spawn("etcd", args, self._log("etcd"), env)

    def _wait_etcd(self) -> None:
        self._wait_until("etcd", lambda: _http_status(self._ports.etcd_client, "/health") == 200)

    # -- kube-apiserver ----------------------------------------------------------------------------------

    def _start_apiserver(self, binary: Path) -> None:
        assert self._pki is not None
        pki = self._pki
        args = [
            str(binary),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={self._ports.apiserver}",
            "--insecure-port=0",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={self.issuer}",
            f"--service-account-key-file={pki.sa_public_key}",
            f"--service-account-signing-key-file={pki.sa_private_key}",
            # As on a real cluster, the API server accepts only its own audience: a token requested for the
            # audience `vault` (the operator's Vault login) is refused by it, so Vault never holds an API
            # credential. Vault's kubernetes method still reviews such tokens (TokenReview with audiences).
            f"--api-audiences={self.issuer}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.kube_audit_log}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            # 127.0.0.1 may not be an Endpoints address: do not publish the `kubernetes` Service endpoints.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ]
        self._printer(f"starting kube-apiserver on {self.api_url}")
        self._processes["kube-apiserver"] = _spawn("kube-apiserver", args, self._log("kube-apiserver"))

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def _wait_apiserver(self) -> None:
        context = self._tls_context()
        self._wait_until(
            "kube-apiserver",
            lambda: (
                _http_status(self._ports.apiserver, "/readyz", tls=context, token=self.admin_token) == 200
            ),
        )

    def _apply_crds(self) -> None:
        """Before the controller-manager starts, so that its garbage collector knows the new kinds at once
        (it looks for new resource types only every 30 seconds)."""
        from vaultsync.devstack.kube_admin import apply_manifests  # imports the kubernetes client

        for path in self._crds:
            self._printer(f"applying {path}")
            apply_manifests(self.kubeconfig, path, timeout=self._start_timeout)

    # -- kube-controller-manager -------------------------------------------------------------------------

    def _start_controller_manager(self, binary: Path) -> None:
        assert self._pki is not None
        pki = self._pki
        args = [
            str(binary),
            f"--kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
            f"--controllers={CONTROLLERS}",
            f"--service-account-private-key-file={pki.sa_private_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            # No serving endpoints: nothing needs them and their default ports are fixed.
            "--port=0",
            "--secure-port=0",
            "--v=1",
        ]
        self._printer("starting kube-controller-manager")
        self._processes["kube-controller-manager"] = _spawn(
            "kube-controller-manager", args, self._log("kube-controller-manager")
        )

    def _wait_controller_manager(self) -> None:
        """Ready when the serviceaccount controller has created ``default/default``."""
        context = self._tls_context()
        path = "/api/v1/namespaces/default/serviceaccounts/default"
        self._wait_until(
            "kube-controller-manager",
            lambda: _http_status(self._ports.apiserver, path, tls=context, token=self.admin_token) == 200,
        )

    # -- OpenBao -----------------------------------------------------------------------------------------

    def _vault_args(self, binary: Path) -> list[str]:
        args = [
            str(binary),
            "server",
            "-dev",
            f"-dev-root-token-id={self.vault_root_token}",
            f"-dev-listen-address={HOST}:{self._ports.vault}",
            f"-config={self.workdir / 'openbao.hcl'}",
        ]
        if self.vault_tls:
            tls_dir = self.workdir / "openbao-tls"
            tls_dir.mkdir(exist_ok=True)
            args += ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"]
        return args

    def _vault_env(self) -> dict[str, str]:
        # `bao server -dev` stores the root token in $HOME/.vault-token: keep it inside the work dir.
        home = self.workdir / "openbao-home"
        home.mkdir(exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("VAULT_", "BAO_"))}
        return {**env, "HOME": str(home)}

    def _start_vault_process(self, binary: Path) -> None:
        log = self._log("openbao")
        self._vault_log_offset = log.stat().st_size if log.exists() else 0
        self.vault_unseal_key = None
        self._printer(f"starting OpenBao dev server on {self.vault_addr}")
        self._processes["openbao"] = _spawn("openbao", self._vault_args(binary), log, self._vault_env())

    def _vault_tls_context(self) -> ssl.SSLContext | None:
        if self.vault_ca_cert is None:
            return None
        if not self.vault_ca_cert.exists():
            raise _NotYet
        return ssl.create_default_context(cafile=str(self.vault_ca_cert))

    def _vault_healthy(self) -> bool:
        try:
            context = self._vault_tls_context()
        except _NotYet:
            return False
        return _http_status(self._ports.vault, "/v1/sys/health", tls=context) == 200

    def _wait_vault(self) -> None:
        self._wait_until("openbao", self._vault_healthy)
        self._wait_until("openbao", self._read_unseal_key, what="print its unseal key")

    def _read_unseal_key(self) -> bool:
        with self._log("openbao").open("rb") as log:
            log.seek(self._vault_log_offset)
            match = UNSEAL_KEY_LINE.search(log.read().decode(errors="replace"))
        if match:
            self.vault_unseal_key = match.group(1)
        return match is not None

    # -- readiness ---------------------------------------------------------------------------------------

    def _wait_until(self, name: str, ready: Callable[[], bool], what: str = "become ready") -> None:
        process = self._processes[name]
        deadline = time.monotonic() + self._start_timeout
        while not ready():
            if not process.running:
                raise StackError(
                    f"{name} exited with code {process.popen.returncode} while starting. "
                    f"See its log {process.log}; last lines:\n{_log_tail(process.log)}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"{name} did not {what} within {self._start_timeout:g}s. "
                    f"See its log {process.log}; last lines:\n{_log_tail(process.log)}"
                )
            time.sleep(0.2)

    # -- outage tests ------------------------------------------------------------------------------------

    def stop_vault(self) -> None:
        """Stop the OpenBao process. NOTE: a dev server keeps everything in memory, so ``start_vault()``
        brings back an EMPTY server (no auth methods, policies or secrets). For an outage that keeps the
        data use ``pause_vault()`` / ``resume_vault()`` or ``seal_vault()`` / ``unseal_vault()``."""
        process = self._processes.pop("openbao", None)
        if process is not None:
            _terminate([process])

    def start_vault(self) -> None:
        """Start a fresh (empty) OpenBao dev server on the same address and wait until it is ready."""
        if "openbao" in self._processes:
            raise StackError("openbao is already running: call stop_vault() first")
        self._start_vault_process(find_bao())
        self._wait_vault()

    def start_vault_only(self) -> None:
        """Start only the OpenBao dev server, with its audit log (no etcd or Kubernetes): e.g. a second,
        TLS-enabled OpenBao for one test. ``stop()`` (or leaving the context manager) ends it."""
        _install_safety_net()
        _LIVE_STACKS.add(self)
        (self.workdir / "openbao.hcl").write_text(self._vault_config())
        try:
            self.start_vault()
        except BaseException:
            self._keep_workdir = True  # the error message points at the log in it
            self.stop()
            raise

    def pause_vault(self) -> None:
        """Freeze OpenBao (SIGSTOP): connections hang or time out, as with a dead host; data is kept."""
        process = self._vault_process()
        process.popen.send_signal(signal.SIGSTOP)
        process.paused = True
        _wait_until_stopped(process.popen.pid)

    def resume_vault(self) -> None:
        """Undo ``pause_vault()`` (SIGCONT)."""
        process = self._vault_process()
        process.popen.send_signal(signal.SIGCONT)
        process.paused = False

    def seal_vault(self) -> None:
        """Seal OpenBao through the API: every request then fails with 503 until ``unseal_vault()``."""
        self._vault_request("PUT", "/v1/sys/seal", None, token=self.vault_root_token)

    def unseal_vault(self) -> None:
        """Unseal OpenBao with the dev server's unseal key."""
        if self.vault_unseal_key is None:
            raise StackError("openbao: no unseal key was read from its log")
        self._vault_request("PUT", "/v1/sys/unseal", {"key": self.vault_unseal_key})

    def vault_sealed(self) -> bool:
        status = self._vault_request("GET", "/v1/sys/seal-status", None)
        return bool(status.get("sealed"))

    def _vault_process(self) -> _Process:
        process = self._processes.get("openbao")
        if process is None or not process.running:
            raise StackError("openbao is not running (stopped with stop_vault()?)")
        return process

    def _vault_request(
        self, method: str, path: str, body: dict[str, str] | None, token: str | None = None
    ) -> dict[str, Any]:
        connection: http.client.HTTPConnection
        if self.vault_tls:
            context = self._vault_tls_context()
            connection = http.client.HTTPSConnection(HOST, self._ports.vault, timeout=10, context=context)
        else:
            connection = http.client.HTTPConnection(HOST, self._ports.vault, timeout=10)
        headers = {"X-Vault-Token": token} if token else {}
        try:
            connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status >= 300:
            raise StackError(f"openbao: {method} {path} answered {response.status}: {payload[:300]!r}")
        return dict(json.loads(payload)) if payload else {}

    # -- PostgreSQL (short-lived credentials) -------------------------------------------------------------

    def postgres(self) -> PostgresServer:
        """The stack's PostgreSQL server, started on the first call (tests that do not need it pay
        nothing); its files are in ``<workdir>/postgres``. ``stop()`` stops it."""
        if self._postgres is None:
            (port,) = pick_free_ports(1)
            server = PostgresServer(
                self.workdir / "postgres", port, start_timeout=self._start_timeout, printer=self._printer
            )
            server.start()
            self._postgres = server
        return self._postgres

    # -- for users ---------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for kubectl, bao and the operator: KUBECONFIG, VAULT_ADDR (+ VAULT_CACERT)."""
        env = {"KUBECONFIG": str(self.kubeconfig), "VAULT_ADDR": self.vault_addr}
        if self.vault_ca_cert is not None:
            env["VAULT_CACERT"] = str(self.vault_ca_cert)
        return env

    def logs(self) -> dict[str, Path]:
        """The log file of every component, by name."""
        names = ["etcd", "kube-apiserver", "kube-controller-manager", "openbao"]
        return {name: self._log(name) for name in names}

    def running(self) -> Iterator[str]:
        """Names of the components whose process is alive."""
        return (name for name, process in self._processes.items() if process.running)


class _NotYet(Exception):
    """A file the readiness check needs has not been written yet."""
