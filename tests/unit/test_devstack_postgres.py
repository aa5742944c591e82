"""devstack/postgres.py without a server: which PostgreSQL a Debian release ships, which installed one is
used, and what find_postgres says when it cannot install one."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaultsync.devstack import binaries, postgres
from vaultsync.devstack.binaries import StackError
from vaultsync.devstack.postgres import (
    PostgresServer,
    _installed_binaries,
    debian_postgresql_major,
    find_postgres,
    parse_apt_postgresql_major,
)


@pytest.mark.parametrize(("debian", "major"), [("12.11", "15"), ("13.1", "17"), ("11.9", "13")])
def test_known_debian_releases_map_to_their_postgresql(debian: str, major: str) -> None:
    assert debian_postgresql_major(debian) == major


def test_apt_cache_version_gives_the_major() -> None:
    shown = "Package: postgresql\nVersion: 16+257\nArchitecture: all\n"
    assert parse_apt_postgresql_major(shown) == "16"
    assert parse_apt_postgresql_major("Version: 1:18+270\n") == "18"
    assert parse_apt_postgresql_major("Package: postgresql\n") is None


def test_an_unknown_release_without_apt_cache_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    with pytest.raises(StackError, match=r"trixie/sid.*Run `apt-get update`"):
        debian_postgresql_major("trixie/sid")


def _fake_bin(root: Path, major: str, complete: bool = True) -> Path:
    bin_dir = root / major / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("initdb", "postgres", "pg_isready") if complete else ("psql",):
        path = bin_dir / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return bin_dir


def test_the_newest_complete_installed_server_is_used(tmp_path: Path) -> None:
    _fake_bin(tmp_path, "13")
    newest_complete = _fake_bin(tmp_path, "15")
    _fake_bin(tmp_path, "16", complete=False)  # a client-only install
    found = _installed_binaries(tmp_path)
    assert found is not None
    assert found.bin_dir == newest_complete


def test_no_server_installed(tmp_path: Path) -> None:
    assert _installed_binaries(tmp_path) is None
    assert _installed_binaries(tmp_path / "missing") is None


def test_without_a_server_and_without_root_it_gives_the_apt_get_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres, "DEBIAN_BIN_ROOT", tmp_path)
    monkeypatch.setattr(postgres, "debian_postgresql_major", lambda: "15")
    monkeypatch.setattr(
        binaries.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None
    )
    monkeypatch.setattr(binaries.os, "geteuid", lambda: 1000)
    printed: list[str] = []
    with pytest.raises(StackError, match=r"sudo apt-get install -y postgresql-15"):
        find_postgres(printed.append)
    assert printed == [
        f"step 'postgresql': no PostgreSQL server in {tmp_path}, installing postgresql-15 (apt-get)"
    ]


def test_the_connection_url_leaves_the_credentials_to_openbao(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path, 54321)
    url = server.connection_url_template()
    assert url == "postgresql://{{username}}:{{password}}@127.0.0.1:54321/postgres?sslmode=disable"
    assert server.superuser_password not in url
