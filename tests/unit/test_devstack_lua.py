"""find_lua (the Argo CD health-check tests' Lua 5.1): what it says when it cannot install it."""

from __future__ import annotations

import pytest

from vaultsync.devstack import binaries
from vaultsync.devstack.binaries import StackError, find_lua


def test_without_lua_and_apt_get_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binaries.shutil, "which", lambda name: None)
    printed: list[str] = []
    with pytest.raises(StackError) as error:
        find_lua(printed.append)
    message = str(error.value)
    assert message.startswith("step 'lua5.1': `lua5.1` is not installed and apt-get is not available")
    assert "Lua 5.1 and its cjson module (lua-cjson)" in message
    assert printed == [
        "step 'lua5.1': lua5.1 with cjson not found, installing the Debian packages lua5.1 lua-cjson"
    ]


def test_without_root_it_gives_the_apt_get_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        binaries.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None
    )
    monkeypatch.setattr(binaries.os, "geteuid", lambda: 1000)
    with pytest.raises(StackError, match=r"sudo apt-get install -y lua5.1 lua-cjson"):
        find_lua(lambda line: None)
