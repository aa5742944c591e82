"""OpenBao's ``database`` and ``pki`` engines, set up with the root token for the tests and the demo.

Mixed into :class:`vaultsync.devstack.vault_admin.VaultAdmin`; every method is an ordinary hvac call, the
same a user makes (docs/vault-setup.md, "Short-lived credentials"):

* ``database``: ``database/config/<connection>`` with the PostgreSQL plugin against the stack's server, and
  roles whose ``creation_statements`` create a login role ``VALID UNTIL '{{expiration}}'``, so that PostgreSQL
  itself refuses the credentials once the lease has ended;
* ``pki``: a mount with an internal root CA (``pki/root/generate/internal``) and roles that issue leaf
  certificates with a short ``ttl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

DATABASE_MOUNT = "database"
DATABASE_CONNECTION = "pg"
DATABASE_ROLE = "app"
PKI_MOUNT = "pki"
PKI_ROLE = "app"
PKI_DOMAIN = "vaultsync.test"
CREATION_STATEMENT = (
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
)
# Revocation as OpenBao's plugin does by default, spelled out so that docs and tests show it.
REVOCATION_STATEMENT = 'DROP ROLE IF EXISTS "{{name}}";'


class PostgresTarget(Protocol):
    """What the database engine needs to know of a PostgreSQL server (``PostgresServer`` has it)."""

    superuser: str
    superuser_password: str

    def connection_url_template(self) -> str: ...


@dataclass(frozen=True)
class DatabaseEngine:
    """A configured database engine: credentials come from ``{mount}/creds/{role}``."""

    mount: str
    connection: str
    role: str
    default_ttl: str
    max_ttl: str

    @property
    def creds_path(self) -> str:
        return f"creds/{self.role}"


@dataclass(frozen=True)
class PkiEngine:
    """A PKI mount with a root CA: certificates come from ``POST {mount}/issue/{role}``."""

    mount: str
    role: str
    ca_pem: str
    domain: str
    ttl: str


class ShortLivedEngines:
    """The engine set-up methods of ``VaultAdmin`` (``self.client`` is its root-token hvac client)."""

    client: Any

    def _mounted(self, mount: str) -> bool:
        return f"{mount}/" in self.client.sys.list_mounted_secrets_engines()["data"]

    def _enable_engine(self, engine: str, mount: str, max_lease_ttl: str | None = None) -> None:
        if not self._mounted(mount):
            config = {"max_lease_ttl": max_lease_ttl} if max_lease_ttl else None
            self.client.sys.enable_secrets_engine(engine, path=mount, config=config)

    # -- database ----------------------------------------------------------------------------------------

    def configure_database_engine(
        self,
        postgres: PostgresTarget,
        *,
        mount: str = DATABASE_MOUNT,
        connection: str = DATABASE_CONNECTION,
        role: str = DATABASE_ROLE,
        default_ttl: str = "30s",
        max_ttl: str = "60s",
    ) -> DatabaseEngine:
        """Mount the database engine, connect it to ``postgres`` (its superuser) and create ``role``."""
        self._enable_engine("database", mount)
        self.client.secrets.database.configure(
            name=connection,
            plugin_name="postgresql-database-plugin",
            connection_url=postgres.connection_url_template(),
            username=postgres.superuser,
            password=postgres.superuser_password,
            allowed_roles=["*"],
            verify_connection=True,
            mount_point=mount,
        )
        return self.database_role(
            role, mount=mount, connection=connection, default_ttl=default_ttl, max_ttl=max_ttl
        )

    def database_role(
        self,
        name: str,
        *,
        mount: str = DATABASE_MOUNT,
        connection: str = DATABASE_CONNECTION,
        default_ttl: str = "30s",
        max_ttl: str = "60s",
    ) -> DatabaseEngine:
        """Create or replace a dynamic role issuing PostgreSQL login roles that end with their lease."""
        self.client.secrets.database.create_role(
            name=name,
            db_name=connection,
            creation_statements=[CREATION_STATEMENT],
            revocation_statements=[REVOCATION_STATEMENT],
            default_ttl=default_ttl,
            max_ttl=max_ttl,
            mount_point=mount,
        )
        return DatabaseEngine(mount, connection, name, default_ttl, max_ttl)

    def database_creds(self, engine: DatabaseEngine) -> dict[str, Any]:
        """Issue credentials: Vault's whole answer (``lease_id``, ``lease_duration``, ``renewable``,
        ``data.username``, ``data.password``)."""
        answer = self.client.secrets.database.generate_credentials(name=engine.role, mount_point=engine.mount)
        return dict(answer)

    # -- leases ------------------------------------------------------------------------------------------

    def renew_lease(self, lease_id: str, increment: int | None = None) -> dict[str, Any]:
        """``sys/leases/renew``: Vault's answer (``lease_duration`` may be shorter than asked: max TTL)."""
        return dict(self.client.sys.renew_lease(lease_id=lease_id, increment=increment))

    def revoke_lease(self, lease_id: str) -> None:
        """``sys/leases/revoke`` (synchronous: the database role is dropped when it returns)."""
        self.client.sys.revoke_lease(lease_id=lease_id)

    def lookup_lease(self, lease_id: str) -> dict[str, Any]:
        return dict(self.client.sys.read_lease(lease_id=lease_id)["data"])

    # -- pki ---------------------------------------------------------------------------------------------

    def configure_pki_engine(
        self,
        *,
        mount: str = PKI_MOUNT,
        role: str = PKI_ROLE,
        domain: str = PKI_DOMAIN,
        ttl: str = "60s",
        max_ttl: str = "24h",
        ca_common_name: str = "vaultsync dev root CA",
    ) -> PkiEngine:
        """Mount ``pki`` with an internal root CA (kept if one exists) and create ``role``."""
        self._enable_engine("pki", mount, max_lease_ttl="87600h")
        ca_pem = self._pki_ca_pem(mount)
        if not ca_pem:
            generated = self.client.secrets.pki.generate_root(
                type="internal",
                common_name=ca_common_name,
                extra_params={"ttl": "87600h", "key_type": "ec", "key_bits": 256},
                mount_point=mount,
            )
            ca_pem = str(generated["data"]["certificate"])
        return self.pki_role(role, mount=mount, domain=domain, ttl=ttl, max_ttl=max_ttl, ca_pem=ca_pem)

    def pki_role(
        self,
        name: str,
        *,
        mount: str = PKI_MOUNT,
        domain: str = PKI_DOMAIN,
        ttl: str = "60s",
        max_ttl: str = "24h",
        ca_pem: str | None = None,
    ) -> PkiEngine:
        """Create or replace a role issuing certificates for ``domain`` and its subdomains (and IP SANs)."""
        self.client.secrets.pki.create_or_update_role(
            name=name,
            extra_params={
                "allowed_domains": [domain],
                "allow_subdomains": True,
                "allow_bare_domains": True,
                "allow_ip_sans": True,
                "key_type": "ec",
                "key_bits": 256,
                "ttl": ttl,
                "max_ttl": max_ttl,
                # Every issued serial is stored, so that revocation and the CRL can be checked.
                "no_store": False,
            },
            mount_point=mount,
        )
        return PkiEngine(mount, name, ca_pem or self._pki_ca_pem(mount), domain, ttl)

    def _pki_ca_pem(self, mount: str) -> str:
        response = self.client.adapter.get(f"/v1/{mount}/ca/pem", raise_exception=False)
        text = getattr(response, "text", "")
        return str(text) if getattr(response, "status_code", 0) == 200 and "BEGIN" in text else ""

    def pki_issue(
        self,
        engine: PkiEngine,
        common_name: str,
        *,
        alt_names: Sequence[str] = (),
        ip_sans: Sequence[str] = (),
        ttl: str | None = None,
    ) -> dict[str, Any]:
        """``POST {mount}/issue/{role}``: the answer's ``data`` (certificate, issuing_ca, ca_chain,
        private_key, serial_number, expiration)."""
        params: dict[str, Any] = {}
        if alt_names:
            params["alt_names"] = ",".join(alt_names)
        if ip_sans:
            params["ip_sans"] = ",".join(ip_sans)
        if ttl:
            params["ttl"] = ttl
        answer = self.client.secrets.pki.generate_certificate(
            name=engine.role, common_name=common_name, extra_params=params, mount_point=engine.mount
        )
        return dict(answer["data"])

    def pki_revoke(self, engine: PkiEngine, serial_number: str) -> None:
        self.client.secrets.pki.revoke_certificate(serial_number=serial_number, mount_point=engine.mount)

    def pki_crl_pem(self, engine: PkiEngine) -> str:
        """The mount's current CRL (PEM)."""
        response = self.client.adapter.get(f"/v1/{engine.mount}/crl/pem", raise_exception=False)
        return str(response.text)
