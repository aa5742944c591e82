"""Vault/OpenBao set-up with the root token, for the demo and the tests (a thin layer over ``hvac``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac

from vaultsync.devstack.vault_engines import ShortLivedEngines

if TYPE_CHECKING:
    from vaultsync.devstack.stack import LocalStack


def service_account_subject(namespace: str, name: str) -> str:
    """The ``sub`` claim of a Kubernetes service-account token."""
    return f"system:serviceaccount:{namespace}:{name}"


class VaultAdmin(ShortLivedEngines):
    """Root-token administration of the stack's OpenBao server (the database and PKI engines' methods
    are in ``vault_engines.py``)."""

    def __init__(self, addr: str, token: str, ca_cert: Path | None = None) -> None:
        verify: str | bool = str(ca_cert) if ca_cert is not None else True
        self.client: Any = hvac.Client(url=addr, token=token, verify=verify)

    @classmethod
    def from_stack(cls, stack: LocalStack) -> VaultAdmin:
        return cls(stack.vault_addr, stack.vault_root_token, stack.vault_ca_cert)

    def close(self) -> None:
        self.client.adapter.close()

    # -- mounts ------------------------------------------------------------------------------------------

    def _auth_mounted(self, mount: str) -> bool:
        return f"{mount}/" in self.client.sys.list_auth_methods()["data"]

    def _enable_auth(self, method: str, mount: str) -> None:
        if not self._auth_mounted(mount):
            self.client.sys.enable_auth_method(method_type=method, path=mount)

    def enable_kv(self, mount: str, version: int = 2) -> None:
        """Mount a KV secrets engine (v1 or v2); an existing mount is left as it is."""
        if f"{mount}/" not in self.client.sys.list_mounted_secrets_engines()["data"]:
            self.client.sys.enable_secrets_engine("kv", path=mount, options={"version": str(version)})

    # -- auth methods ------------------------------------------------------------------------------------

    def enable_kubernetes_auth(
        self, kubernetes_host: str, ca_cert_pem: str, reviewer_jwt: str, mount: str = "kubernetes"
    ) -> None:
        """Enable and configure the kubernetes auth method (logins are checked with TokenReview)."""
        self._enable_auth("kubernetes", mount)
        self.client.auth.kubernetes.configure(
            kubernetes_host=kubernetes_host,
            kubernetes_ca_cert=ca_cert_pem,
            token_reviewer_jwt=reviewer_jwt,
            disable_local_ca_jwt=True,
            mount_point=mount,
        )

    def enable_jwt_auth(
        self, pubkey_pem: str, issuer: str, mount: str = "jwt", audiences: Sequence[str] | None = None
    ) -> None:
        """Enable and configure the jwt auth method to verify service-account tokens offline.

        ``audiences`` is accepted for symmetry; Vault binds audiences per role (see ``jwt_role``)."""
        del audiences
        self._enable_auth("jwt", mount)
        self.client.auth.jwt.configure(jwt_validation_pubkeys=[pubkey_pem], bound_issuer=issuer, path=mount)

    def kubernetes_role(
        self,
        name: str,
        sa_names: Sequence[str],
        sa_namespaces: Sequence[str],
        policies: Sequence[str],
        ttl: str = "1h",
        audience: str | None = None,
        mount: str = "kubernetes",
    ) -> None:
        """Create or replace a kubernetes auth role bound to ServiceAccounts (``*`` matches any)."""
        self.client.auth.kubernetes.create_role(
            name=name,
            bound_service_account_names=list(sa_names),
            bound_service_account_namespaces=list(sa_namespaces),
            policies=list(policies),
            ttl=ttl,
            audience=audience,
            mount_point=mount,
        )

    def jwt_role(
        self,
        name: str,
        sa_names: Sequence[str],
        sa_namespaces: Sequence[str],
        audiences: Sequence[str],
        policies: Sequence[str],
        ttl: str = "1h",
        mount: str = "jwt",
    ) -> None:
        """Create or replace a jwt auth role for service-account tokens: ``sub`` must be one of
        ``system:serviceaccount:NS:NAME`` (glob matching when a name or namespace is ``*``)."""
        subjects = [service_account_subject(ns, sa) for ns in sa_namespaces for sa in sa_names]
        glob = any("*" in subject for subject in subjects)
        self.client.auth.jwt.create_role(
            name=name,
            role_type="jwt",
            user_claim="sub",
            allowed_redirect_uris=[],
            bound_audiences=list(audiences),
            bound_claims={"sub": subjects},
            bound_claims_type="glob" if glob else "string",
            token_policies=list(policies),
            token_ttl=ttl,
            path=mount,
        )

    def write_policy(self, name: str, hcl: str) -> None:
        self.client.sys.create_or_update_policy(name=name, policy=hcl)

    # -- KV v2 -------------------------------------------------------------------------------------------

    def kv_put(self, path: str, data: Mapping[str, Any], mount: str = "secret") -> int:
        """Write a new KV v2 version; returns its version number."""
        response = self.client.secrets.kv.v2.create_or_update_secret(
            path=path, secret=dict(data), mount_point=mount
        )
        return int(response["data"]["version"])

    def kv_get(self, path: str, mount: str = "secret", version: int | None = None) -> dict[str, Any]:
        """Read a KV v2 secret's data (the latest version unless ``version`` is given)."""
        response = self.client.secrets.kv.v2.read_secret_version(
            path=path, version=version, mount_point=mount, raise_on_deleted_version=True
        )
        return dict(response["data"]["data"])

    def kv_delete(self, path: str, mount: str = "secret") -> None:
        """Soft-delete the latest KV v2 version (it can be undeleted)."""
        self.client.secrets.kv.v2.delete_latest_version_of_secret(path=path, mount_point=mount)

    def kv_destroy_version(self, path: str, versions: Sequence[int], mount: str = "secret") -> None:
        """Permanently destroy KV v2 versions."""
        self.client.secrets.kv.v2.destroy_secret_versions(
            path=path, versions=list(versions), mount_point=mount
        )

    def kv_delete_metadata(self, path: str, mount: str = "secret") -> None:
        """Delete a KV v2 secret with all its versions and metadata."""
        self.client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=mount)

    # -- KV v1 -------------------------------------------------------------------------------------------

    def kv1_put(self, path: str, data: Mapping[str, Any], mount: str = "kv1") -> None:
        self.client.secrets.kv.v1.create_or_update_secret(path=path, secret=dict(data), mount_point=mount)

    def kv1_delete(self, path: str, mount: str = "kv1") -> None:
        self.client.secrets.kv.v1.delete_secret(path=path, mount_point=mount)

    # -- seal --------------------------------------------------------------------------------------------

    def seal(self) -> None:
        self.client.sys.seal()

    def unseal(self, key: str) -> None:
        self.client.sys.submit_unseal_key(key=key)

    def is_sealed(self) -> bool:
        return bool(self.client.sys.is_sealed())
