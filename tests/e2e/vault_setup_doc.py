"""The code blocks of docs/vault-setup.md, by name, for the tests that run them.

Each block of the page is preceded by a hidden marker ``<!-- test: NAME -->``. Shell blocks are run as they
are written (``bash -euo pipefail``) with the stack's ``bao`` and ``kubectl``; YAML blocks are parsed. The
page's variables (block ``variables``) are the only inputs a shell block may take from outside: ``run_block``
fails when a block uses a variable that the page does not declare, or that the caller does not give.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vaultsync.devstack.binaries import find_bao, find_kubectl
from vaultsync.devstack.demo import repo_root

DOC = repo_root() / "docs" / "vault-setup.md"
BLOCK = re.compile(r"<!-- test: ([a-z0-9-]+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)
EXPORT = re.compile(r"^export ([A-Z_][A-Z0-9_]*)=(\S*)", re.MULTILINE)
ASSIGNED = re.compile(r"^([A-Z_][A-Z0-9_]*)=", re.MULTILINE)
USED = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)")
# Set by the runner for every block: the CLI's connection and the caller's PATH/HOME.
ENVIRONMENT = {"VAULT_ADDR", "VAULT_TOKEN", "VAULT_CACERT", "VAULT_NAMESPACE", "KUBECONFIG", "PATH", "HOME"}


@dataclass(frozen=True)
class Block:
    name: str
    language: str
    text: str

    def variables_used(self) -> set[str]:
        """Variables the block reads and does not assign itself."""
        return set(USED.findall(self.text)) - set(ASSIGNED.findall(self.text))


def blocks(path: Path = DOC) -> dict[str, Block]:
    found: dict[str, Block] = {}
    for name, language, text in BLOCK.findall(path.read_text()):
        assert name not in found, f"{path}: two blocks are named {name}"
        found[name] = Block(name, language, text)
    return found


def block(name: str) -> Block:
    found = blocks().get(name)
    assert found is not None, f"{DOC} has no block marked <!-- test: {name} -->"
    return found


def declared_variables() -> dict[str, str]:
    """The page's ``variables`` block: name -> example value."""
    return dict(EXPORT.findall(block("variables").text))


def yaml_block(name: str, replace: Mapping[str, str] | None = None) -> Any:
    """A YAML block, parsed after replacing the page's example names (e.g. ``team-a``) with the test's."""
    found = block(name)
    assert found.language == "yaml", f"block {name} is {found.language}, not yaml"
    text = found.text
    for old, new in (replace or {}).items():
        assert old in text, f"block {name} does not mention {old}"
        text = text.replace(old, new)
    return yaml.safe_load(text)


def run_block(
    name: str,
    *,
    variables: Mapping[str, str],
    vault_addr: str,
    vault_token: str,
    kubeconfig: Path,
    home: Path,
    vault_cacert: Path | None = None,
    vault_namespace: str | None = None,
    timeout: float = 60.0,
) -> str:
    """Runs a shell block of the page; returns its output. ``variables`` are the page's variables."""
    found = block(name)
    assert found.language == "sh", f"block {name} is {found.language}, not sh"
    declared = set(declared_variables())
    undeclared = found.variables_used() - declared - ENVIRONMENT
    assert not undeclared, f"block {name} uses {sorted(undeclared)}, which the variables block does not set"
    missing = (found.variables_used() & declared) - set(variables)
    assert not missing, f"block {name} needs the variables {sorted(missing)}"
    unknown = set(variables) - declared
    assert not unknown, f"{sorted(unknown)} are not variables of {DOC.name}"
    tools = os.pathsep.join(str(p.parent) for p in (find_bao(), find_kubectl()))
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "VAULT_ADDR": vault_addr,
        "VAULT_TOKEN": vault_token,
        **({"VAULT_CACERT": str(vault_cacert)} if vault_cacert else {}),
        **({"VAULT_NAMESPACE": vault_namespace} if vault_namespace else {}),
        **variables,
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", found.text],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"block {name} of {DOC.name} failed with code {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout
