"""The real operator (`python -m vaultsync run`) as a child process, logging to a file.

Shared by the end-to-end tests and the benchmark (``bench/``): ``operator_env`` is the environment that
points an operator at a ``LocalStack`` with the operator's own Vault identity
(see ``demo.configure_operator_identity``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from vaultsync.devstack.demo import OPERATOR_NAMESPACE, OPERATOR_ROLE
from vaultsync.devstack.stack import LocalStack, pick_free_ports


def operator_env(
    stack: LocalStack, token_file: Path, *, watch: str, role: str = OPERATOR_ROLE
) -> dict[str, str]:
    """The settings of an operator that watches ``watch`` (names or globs, comma-separated) on ``stack``
    and logs in to Vault as the operator's ServiceAccount (JWT in ``token_file``) with Vault role ``role``."""
    return {
        "VAULTSYNC_WATCH_NAMESPACES": watch,
        **stack.env(),
        "VAULTSYNC_TOKEN_FILE": str(token_file),
        "VAULTSYNC_AUTH_ROLE": role,
        "VAULTSYNC_NAMESPACE": OPERATOR_NAMESPACE,
    }


class OperatorProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.health_port, self.metrics_port = pick_free_ports(2)
        self.env = {
            **os.environ,
            **env,
            "VAULTSYNC_HEALTH_PORT": str(self.health_port),
            "VAULTSYNC_METRICS_PORT": str(self.metrics_port),
            "VAULTSYNC_LISTEN_ADDRESS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vaultsync", "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.health_port}/readyz", timeout=2
                ) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the operator did not become ready in {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait: returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def peak_rss_bytes(self) -> int | None:
        """The process's peak resident set size so far (VmHWM), or None when it is not running."""
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None
