"""docs/vault-setup.md cannot drift: pure checks of what the end-to-end tests do not run.

The shell blocks are run by tests/e2e (test_vault_tls.py, test_tenancy.py, test_default_identity_fence.py);
here: every block they need exists and uses only declared variables, the settings the page names exist, its
RBAC rule is the one deploy/ grants, and the messages its AuthFailed table quotes are the operator's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.e2e.vault_setup_doc import DOC, ENVIRONMENT, blocks, declared_variables, yaml_block
from vaultsync.devstack.demo import repo_root
from vaultsync.settings import SETTINGS
from vaultsync.vault.client import LoginRefused
from vaultsync.vault.identity import Identity, login_refused_message

RUN_BY_TESTS = {
    "kubernetes-auth",
    "jwt-auth",
    "operator-role",
    "tenant-serviceaccount",
    "tenant-policy",
    "tenant-kubernetes-role",
    "tenant-jwt-role",
    "vaultsecret-kubernetes",
    "vaultsecret-jwt",
    "namespace-kv",
}
OPERATOR_SOURCES = ("vault/identity.py", "vault/client.py", "runtime.py", "engine/engine.py")


def test_the_blocks_the_e2e_tests_run_exist() -> None:
    found = blocks()
    assert set(found) >= RUN_BY_TESTS
    for name in RUN_BY_TESTS:
        assert f"`{name}`" in DOC.read_text(), f"'How this page is tested' does not mention {name}"


@pytest.mark.parametrize("name", sorted(n for n, b in blocks().items() if b.language == "sh"))
def test_shell_blocks_use_only_declared_variables(name: str) -> None:
    used = blocks()[name].variables_used()
    assert used - set(declared_variables()) - ENVIRONMENT == set()


def test_every_declared_variable_is_used() -> None:
    used = set().union(*(b.variables_used() for b in blocks().values() if b.name != "variables"))
    assert set(declared_variables()) <= used


def test_the_example_tenant_is_the_variables_example() -> None:
    assert declared_variables()["TENANT_NS"] == "team-a"
    example = yaml_block("vaultsecret-kubernetes")
    assert example["metadata"]["namespace"] == "team-a"
    assert example["spec"]["auth"]["role"] == "tenant-team-a"


def _env_names(block: str) -> set[str]:
    return {entry["name"] for entry in yaml_block(block)["env"]}


def test_the_settings_the_page_names_exist() -> None:
    known = {setting.env for setting in SETTINGS} | {"VAULT_TOKEN"}  # the CLI's token, not a setting
    named = set(re.findall(r"`((?:VAULT|VAULTSYNC)_[A-Z_]+)`", DOC.read_text()))
    assert named - known == set()
    assert _env_names("fence-setting") == {"VAULTSYNC_DEFAULT_IDENTITY_NAMESPACES"}
    assert _env_names("tls-settings") <= known


def _token_rules(path: Path) -> list[dict[str, object]]:
    rules = []
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind") in ("Role", "ClusterRole"):
            rules += [r for r in doc["rules"] if "serviceaccounts/token" in r.get("resources", [])]
    return rules


@pytest.mark.parametrize(
    "manifest",
    ["deploy/base/rbac-cluster.yaml", "deploy/overlays/single-namespace/rbac-watched-namespace.yaml"],
)
def test_the_tokenrequest_rule_is_the_one_deploy_grants(manifest: str) -> None:
    (documented,) = yaml_block("tokenrequest-rbac")
    assert _token_rules(repo_root() / manifest) == [documented]


def _login_messages() -> list[str]:
    """The operator's messages for Vault's refusals of a login, as users see them."""
    identity = Identity("kubernetes", "kubernetes", "tenant-a", None, "team-a", "app", "uid", "vault")
    details = [
        (400, 'invalid role name "tenant-a"'),
        (403, "service account name not authorized"),
        (403, "permission denied"),
        (400, "error validating token: invalid audience (aud) claim"),
    ]
    return [login_refused_message(identity, LoginRefused("", status=s, detail=d)) for s, d in details]


def test_the_auth_failed_table_quotes_the_operators_messages() -> None:
    """Each `message says` cell (its <placeholders> match any word) is in the operator's source or in what it
    says when Vault refuses a login."""
    sources = [(repo_root() / "operator" / "vaultsync" / p).read_text() for p in OPERATOR_SOURCES]
    corpus = "\n".join([*sources, *_login_messages()])
    table = DOC.read_text().split("## 9. What `AuthFailed` means", 1)[1].split("\n## ", 1)[0]
    quoted = re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE)
    assert len(quoted) >= 6
    for message in quoted:
        pattern = r"[^\s/]+".join(re.escape(part) for part in re.split(r"<[a-z]+>", message))
        assert re.search(pattern, corpus), f"the operator never says {message!r}"
