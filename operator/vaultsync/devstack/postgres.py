"""PostgreSQL for the dev stack: the database OpenBao's ``database`` engine issues short-lived roles in.

* :func:`find_postgres` locates Debian's server binaries (``/usr/lib/postgresql/<major>/bin``) and installs
  ``postgresql-<major>`` with apt-get when none are there, the major version being the Debian release's own
  (15 on Debian 12, 17 on Debian 13), detected at run time.
* :class:`PostgresServer` runs one server on 127.0.0.1 and a free port, with its data directory, socket
  directory and log under one directory. ``initdb`` refuses to run as root, so when Python runs as root the
  server runs as the ``postgres`` user that the Debian package creates, on a data directory it owns.
  Passwords are checked with scram-sha-256 (no ``trust`` line, also not for the local socket).
* :meth:`PostgresServer.can_login` and :meth:`PostgresServer.role_names` are the checks the tests make:
  do issued credentials log in, and is a revoked role gone from ``pg_roles``. They use ``pg8000``, a
  pure-Python driver from the ``dev`` extra, imported only when they are called.

``LocalStack.postgres()`` starts the server on first use; ``LocalStack.stop()`` stops it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vaultsync.devstack.binaries import StackError, _apt_install

__all__ = ["PostgresServer", "debian_postgresql_major", "find_postgres"]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"  # created by Debian's postgresql-common package
DEBIAN_BIN_ROOT = Path("/usr/lib/postgresql")
# The PostgreSQL major version each Debian release ships (`postgresql` is its dependency package).
DEBIAN_RELEASE_POSTGRESQL = {"11": "13", "12": "15", "13": "17"}
STOP_GRACE_SECONDS = 10.0
Printer = Callable[[str], None]


def _print_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- binaries -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresBinaries:
    bin_dir: Path

    @property
    def initdb(self) -> Path:
        return self.bin_dir / "initdb"

    @property
    def postgres(self) -> Path:
        return self.bin_dir / "postgres"

    @property
    def pg_isready(self) -> Path:
        return self.bin_dir / "pg_isready"

    @property
    def psql(self) -> Path:
        return self.bin_dir / "psql"

    def complete(self) -> bool:
        return all(os.access(p, os.X_OK) for p in (self.initdb, self.postgres, self.pg_isready))


def _installed_binaries(root: Path | None = None) -> PostgresBinaries | None:
    """The newest complete ``<root>/<major>/bin`` (several majors can be installed side by side)."""
    root = DEBIAN_BIN_ROOT if root is None else root
    if not root.is_dir():
        return None
    majors = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
    for major in majors:
        binaries = PostgresBinaries(major / "bin")
        if binaries.complete():
            return binaries
    return None


def debian_postgresql_major(debian_version: str | None = None) -> str:
    """The PostgreSQL major version of this Debian release: from ``/etc/debian_version`` for the releases
    we know, else from ``apt-cache show postgresql`` (its version is ``<major>+<n>``)."""
    if debian_version is None:
        with contextlib.suppress(OSError):
            debian_version = Path("/etc/debian_version").read_text().strip()
    release = (debian_version or "").split(".")[0]
    if release in DEBIAN_RELEASE_POSTGRESQL:
        return DEBIAN_RELEASE_POSTGRESQL[release]
    if shutil.which("apt-cache") is not None:
        shown = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", "postgresql"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        major = parse_apt_postgresql_major(shown.stdout)
        if major is not None:
            return major
    raise StackError(
        f"step 'postgresql': cannot tell which PostgreSQL this Debian release "
        f"({debian_version or 'unknown'}) ships: `apt-cache show postgresql` gives no version. "
        "Run `apt-get update` (as root), or install PostgreSQL's server package (postgresql-<major>) by hand."
    )


def parse_apt_postgresql_major(apt_show: str) -> str | None:
    """``Version: 15+248+deb12u1`` in ``apt-cache show postgresql`` -> ``15``."""
    match = re.search(r"^Version:\s*(?:\d+:)?(\d+)\+", apt_show, re.MULTILINE)
    return match.group(1) if match else None


def find_postgres(printer: Printer = _print_stderr) -> PostgresBinaries:
    """Debian's PostgreSQL server binaries; installs ``postgresql-<major>`` when none are installed."""
    found = _installed_binaries()
    if found is not None:
        return found
    package = f"postgresql-{debian_postgresql_major()}"
    printer(f"step 'postgresql': no PostgreSQL server in {DEBIAN_BIN_ROOT}, installing {package} (apt-get)")
    _apt_install(package, printer, step="postgresql", what="PostgreSQL 13 or newer (initdb, postgres)")
    found = _installed_binaries()
    if found is None:
        raise StackError(
            f"step 'postgresql': apt-get installed {package} but {DEBIAN_BIN_ROOT}/<major>/bin holds no "
            "initdb, postgres and pg_isready."
        )
    return found


# --- the server -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunAs:
    """The account the server runs as: ``postgres`` when we are root (initdb refuses root), else us."""

    uid: int
    gid: int

    @classmethod
    def choose(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(os.geteuid(), os.getegid())
        try:
            account = pwd.getpwnam(SYSTEM_USER)
        except KeyError as exc:
            raise StackError(
                f"step 'postgresql': running as root, but there is no `{SYSTEM_USER}` user to run the server "
                "as (initdb refuses root). Install Debian's postgresql package, which creates it, or run the "
                "stack as an ordinary user."
            ) from exc
        return cls(account.pw_uid, account.pw_gid)

    def owns(self, path: Path, mode: int) -> None:
        path.chmod(mode)
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)

    def popen_kwargs(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _die_with_parent() -> None:
    """Runs in the child after its uid changed (which clears the parent-death signal), before exec."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))


def _log_tail(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])


class PostgresServer:
    """One PostgreSQL server on ``127.0.0.1:port``, its files under ``directory``.

    ``superuser``/``superuser_password`` are the credentials OpenBao's database engine connects with.
    The password is random, written only to a 0600 file that initdb reads, and never printed.
    """

    def __init__(
        self,
        directory: Path,
        port: int,
        *,
        binaries: PostgresBinaries | None = None,
        start_timeout: float = 60.0,
        printer: Printer = _print_stderr,
    ) -> None:
        self.directory = directory.resolve()
        self.port = port
        self.host = HOST
        self.superuser = SUPERUSER
        self.superuser_password = secrets.token_urlsafe(24)
        self.database = "postgres"
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory / "socket"
        self.log = self.directory / "postgres.log"
        self._binaries = binaries
        self._start_timeout = start_timeout
        self._printer = printer
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def connection_url_template(self) -> str:
        """The ``connection_url`` for OpenBao's postgresql plugin (it fills in username and password)."""
        return f"postgresql://{{{{username}}}}:{{{{password}}}}@{self.host}:{self.port}/{self.database}?sslmode=disable"

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """initdb (first start only), start the server and wait until it accepts connections."""
        began = time.monotonic()
        binaries = self._binaries or find_postgres(self._printer)
        run_as = _RunAs.choose()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)  # the server's account must reach its data dir below our work dir
        for parent in self.directory.parents:
            if os.geteuid() == 0 and parent.stat().st_mode & 0o001 == 0:
                # e.g. pytest's basetemp is 0700: let the postgres account traverse (not list) it.
                parent.chmod(parent.stat().st_mode | 0o001)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(binaries, run_as)
        self.socket_dir.mkdir(exist_ok=True)
        run_as.owns(self.socket_dir, 0o700)
        self._spawn(binaries, run_as)
        try:
            self._wait_ready(binaries)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = round(time.monotonic() - began, 2)

    def _initdb(self, binaries: PostgresBinaries, run_as: _RunAs) -> None:
        self.data_dir.mkdir(exist_ok=True)
        run_as.owns(self.data_dir, 0o700)
        pwfile = self.directory / "superuser-password"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.superuser_password + "\n")
        run_as.owns(pwfile, 0o600)
        command = [
            str(binaries.initdb),
            f"--pgdata={self.data_dir}",
            f"--username={self.superuser}",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",  # a throw-away cluster: skip the fsyncs (saves seconds on a busy disk)
        ]
        self._printer(f"step 'postgresql': initdb {self.data_dir}")
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=self.directory,
            check=False,
            **run_as.popen_kwargs(),
        )
        pwfile.unlink()
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
            raise StackError(
                f"step 'postgresql': initdb failed (exit {result.returncode}). Check that {self.directory} "
                f"is on a writable disk and that its parents can be traversed by uid {run_as.uid}.\n{tail}"
            )

    def _spawn(self, binaries: PostgresBinaries, run_as: _RunAs) -> None:
        command = [
            str(binaries.postgres),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
            # A failing CREATE ROLE ... PASSWORD '...' would otherwise be copied into postgres.log.
            "-c",
            "log_min_error_statement=panic",
        ]
        on_main_thread = threading.current_thread() is threading.main_thread()
        preexec = _die_with_parent if on_main_thread and sys.platform == "linux" else None
        self._log_handle = self.log.open("ab")
        self._printer(f"starting PostgreSQL on {self.host}:{self.port}")
        try:
            self._popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=preexec,
                **run_as.popen_kwargs(),
            )
        except OSError as exc:
            self._log_handle.close()
            raise StackError(f"postgresql: could not start {command[0]}: {exc}") from exc

    def _accepts_connections(self, binaries: PostgresBinaries) -> bool:
        probe = subprocess.run(
            [str(binaries.pg_isready), "-q", "-h", self.host, "-p", str(self.port), "-t", "2"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0

    def _wait_ready(self, binaries: PostgresBinaries) -> None:
        deadline = time.monotonic() + self._start_timeout
        while not self._accepts_connections(binaries):
            assert self._popen is not None
            if self._popen.poll() is not None:
                raise StackError(
                    f"postgresql exited with code {self._popen.returncode} while starting. See its log "
                    f"{self.log}; last lines:\n{_log_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"postgresql did not accept connections within {self._start_timeout:g}s. See its log "
                    f"{self.log}; last lines:\n{_log_tail(self.log)}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: open sessions are ended), SIGKILL if it is still there after 10 s."""
        popen, self._popen = self._popen, None
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGINT)
            try:
                popen.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    # -- checks for the tests ----------------------------------------------------------------------------

    def _connect(self, user: str, password: str) -> Any:
        import pg8000.native  # the dev extra's pure-Python driver; only the tests need it

        return pg8000.native.Connection(
            user, host=self.host, port=self.port, database=self.database, password=password, timeout=10
        )

    def can_login(self, user: str, password: str) -> bool:
        """Whether ``user``/``password`` can open a session (and run a query) right now."""
        import pg8000.exceptions

        try:
            connection = self._connect(user, password)
        except pg8000.exceptions.DatabaseError:
            return False
        try:
            return bool(connection.run("SELECT 1") == [[1]])
        finally:
            connection.close()

    def query(self, sql: str, **params: Any) -> list[list[Any]]:
        """Run ``sql`` as the superuser (named parameters as ``:name``); returns the rows."""
        connection = self._connect(self.superuser, self.superuser_password)
        try:
            return list(connection.run(sql, **params) or [])
        finally:
            connection.close()

    def role_names(self) -> set[str]:
        """Every role in ``pg_roles`` that may log in."""
        return {str(row[0]) for row in self.query("SELECT rolname FROM pg_roles WHERE rolcanlogin")}

    def valid_until(self, role: str) -> Any:
        """The role's ``VALID UNTIL`` (a timezone-aware datetime), or None if the role does not exist."""
        rows = self.query("SELECT rolvaliduntil FROM pg_roles WHERE rolname = :role", role=role)
        return rows[0][0] if rows else None
