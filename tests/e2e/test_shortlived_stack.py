"""The dev stack's short-lived credentials, proven against the real components: OpenBao's database engine
issues PostgreSQL roles that log in, whose lease renews (in PostgreSQL too) and whose revocation drops the
role; OpenBao's pki engine issues certificates whose chain verifies against the mount's CA and whose
revocation puts the serial on the CRL. Vault's real answers also go through core/lease.py and core/pki.py,
so the pure logic is checked against what OpenBao actually says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests
from cryptography import x509

from tests.e2e.vault_setup_doc import run_block
from vaultsync.core.lease import Lease, RenewalOutcome, renewal_failed, renewal_succeeded
from vaultsync.core.pki import CertificateRecord, cached_certificate_problem, parse_issue_answer, secret_data
from vaultsync.devstack.postgres import PostgresServer
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin
from vaultsync.devstack.vault_engines import DatabaseEngine, PkiEngine

pytestmark = pytest.mark.e2e


def now() -> datetime:
    return datetime.now(UTC)


def raw_renew(stack: LocalStack, lease_id: str, increment: int) -> tuple[int, dict[str, Any]]:
    """sys/leases/renew without hvac's exceptions: the status code and body as the operator sees them."""
    response = requests.put(
        f"{stack.vault_addr}/v1/sys/leases/renew",
        json={"lease_id": lease_id, "increment": increment},
        headers={"X-Vault-Token": stack.vault_root_token},
        verify=str(stack.vault_ca_cert) if stack.vault_ca_cert else True,
        timeout=10,
    )
    return response.status_code, dict(response.json() or {})


# --- database engine + PostgreSQL -----------------------------------------------------------------------


def test_issued_credentials_log_in_to_postgres_until_their_lease_ends(
    postgres: PostgresServer, vault_admin: VaultAdmin, database_engine: DatabaseEngine
) -> None:
    before = now()
    answer = vault_admin.database_creds(database_engine)
    lease = Lease.issued(answer, before)
    assert lease.renewable
    assert lease.duration == 30  # the fixture role's default_ttl
    username, password = answer["data"]["username"], answer["data"]["password"]
    assert postgres.can_login(username, password)
    assert not postgres.can_login(username, password + "x")
    # PostgreSQL itself ends the role with the lease: VALID UNTIL is the lease's expiry.
    valid_until = postgres.valid_until(username)
    assert valid_until is not None
    assert lease.expires_at - timedelta(seconds=5) <= valid_until <= lease.expires_at + timedelta(seconds=5)


def test_a_renewal_extends_the_role_in_postgres(
    postgres: PostgresServer, vault_admin: VaultAdmin, database_engine: DatabaseEngine
) -> None:
    engine = vault_admin.database_role("renewable", default_ttl="10s", max_ttl="10m")
    answer = vault_admin.database_creds(engine)
    lease = Lease.issued(answer, now())
    username, password = answer["data"]["username"], answer["data"]["password"]
    first_valid_until = postgres.valid_until(username)

    renewed = vault_admin.renew_lease(lease.id, increment=120)
    result = renewal_succeeded(lease, renewed, requested=120, now=now())

    assert result.outcome is RenewalOutcome.EXTENDED, result.message
    assert result.lease.duration >= 118
    assert postgres.valid_until(username) >= first_valid_until + timedelta(seconds=100)
    assert postgres.can_login(username, password)


def test_a_renewal_past_max_ttl_is_seen_as_shortened(
    vault_admin: VaultAdmin, database_engine: DatabaseEngine
) -> None:
    engine = vault_admin.database_role("capped", default_ttl="10s", max_ttl="20s")
    answer = vault_admin.database_creds(engine)
    lease = Lease.issued(answer, now())

    renewed = vault_admin.renew_lease(lease.id, increment=120)
    result = renewal_succeeded(lease, renewed, requested=120, now=now())

    assert result.outcome is RenewalOutcome.SHORTENED
    assert result.lease.duration <= 20
    assert result.needs_new_credentials
    assert result.next.at < result.lease.expires_at


def test_revoking_the_lease_drops_the_role_and_a_renewal_then_finds_it_gone(
    stack: LocalStack, postgres: PostgresServer, vault_admin: VaultAdmin, database_engine: DatabaseEngine
) -> None:
    answer = vault_admin.database_creds(database_engine)
    lease = Lease.issued(answer, now())
    username, password = answer["data"]["username"], answer["data"]["password"]
    assert username in postgres.role_names()

    vault_admin.revoke_lease(lease.id)

    assert username not in postgres.role_names()
    assert not postgres.can_login(username, password)
    status, body = raw_renew(stack, lease.id, 30)
    result = renewal_failed(lease, status, body.get("errors", []), now())
    assert result.outcome is RenewalOutcome.GONE, (status, body)


# --- pki engine -----------------------------------------------------------------------------------------


def test_an_issued_certificate_chains_to_the_mounts_ca_and_becomes_tls_secret_data(
    vault_admin: VaultAdmin, pki_engine: PkiEngine
) -> None:
    issued_at = now()
    answer = vault_admin.pki_issue(
        pki_engine, f"web.{pki_engine.domain}", alt_names=[f"api.{pki_engine.domain}"], ip_sans=["127.0.0.1"]
    )
    issued = parse_issue_answer(answer)
    data = secret_data(issued)

    mount_ca = x509.load_pem_x509_certificate(pki_engine.ca_pem.encode())
    chain = x509.load_pem_x509_certificates(data["tls.crt"].encode())
    assert chain[0].serial_number == issued.certificate.serial_number
    assert mount_ca not in chain  # the root is in ca.crt, not repeated in tls.crt
    assert x509.load_pem_x509_certificate(data["ca.crt"].encode()) == mount_ca
    chain[0].verify_directly_issued_by(mount_ca)
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"api.{pki_engine.domain}" in names.get_values_for_type(x509.DNSName)
    # The role's ttl is 60s, counted from the issue (Vault backdates notBefore).
    lifetime = issued.not_after - issued_at
    assert timedelta(seconds=50) <= lifetime <= timedelta(seconds=70)

    record = CertificateRecord.of(issued, issued_at)
    assert CertificateRecord.from_status(record.to_status()) == record
    assert cached_certificate_problem(data, record, now()) is None


def test_a_revoked_certificate_is_on_the_crl(vault_admin: VaultAdmin, pki_engine: PkiEngine) -> None:
    issued = parse_issue_answer(vault_admin.pki_issue(pki_engine, f"old.{pki_engine.domain}"))
    kept = parse_issue_answer(vault_admin.pki_issue(pki_engine, f"new.{pki_engine.domain}"))

    vault_admin.pki_revoke(pki_engine, issued.serial_number)

    crl = x509.load_pem_x509_crl(vault_admin.pki_crl_pem(pki_engine).encode())
    mount_ca = x509.load_pem_x509_certificate(pki_engine.ca_pem.encode())
    assert crl.is_signature_valid(mount_ca.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(issued.certificate.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.certificate.serial_number) is None


# --- docs/vault-setup.md, section 10, as written ---------------------------------------------------------

DOC_TENANT = "t-doc"
SECTION_10_BLOCKS = (
    "database-engine",
    "database-role",
    "database-policy",
    "pki-engine",
    "pki-role",
    "pki-policy",
)


@pytest.fixture(scope="module")
def doc_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A second OpenBao, configured only by the page's blocks."""
    vault = LocalStack(tmp_path_factory.mktemp("shortlived-doc-vault"))
    try:
        vault.start_vault_only()
        yield vault
    finally:
        vault.stop()


class TenantClient:
    """Raw HTTP as a token of the tenant policies only (no default policy), as the operator will send it."""

    def __init__(self, vault: LocalStack, token: str) -> None:
        self.base = f"{vault.vault_addr}/v1"
        self.headers = {"X-Vault-Token": token}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return requests.request(method, f"{self.base}/{path}", json=body, headers=self.headers, timeout=10)


def test_the_setup_pages_blocks_give_working_engines_and_tenant_policies(
    stack: LocalStack, postgres: PostgresServer, doc_vault: LocalStack, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    password_file = home / "pg-admin-password"
    password_file.write_text(postgres.superuser_password)  # no newline, as the page says
    variables = {
        "PG_ADDRESS": f"{postgres.host}:{postgres.port}",
        "PG_DATABASE": postgres.database,
        "PG_ADMIN_USER": postgres.superuser,
        "PG_ADMIN_PASSWORD_FILE": str(password_file),
        "PG_SSLMODE": "disable",
        "PKI_DOMAIN": "vaultsync.test",
        "TENANT_NS": DOC_TENANT,
    }
    for name in SECTION_10_BLOCKS:
        run_block(
            name,
            variables=variables,
            vault_addr=doc_vault.vault_addr,
            vault_token=doc_vault.vault_root_token,
            kubeconfig=stack.kubeconfig,
            home=home,
        )
    root = hvac.Client(url=doc_vault.vault_addr, token=doc_vault.vault_root_token)
    created = root.auth.token.create(
        policies=[f"tenant-{DOC_TENANT}-db", f"tenant-{DOC_TENANT}-pki"], no_default_policy=True, ttl="10m"
    )
    tenant = TenantClient(doc_vault, created["auth"]["client_token"])

    # database: issue, log in, renew and revoke through the lease-scoped paths
    issued = tenant.call("GET", "database/creds/app")
    assert issued.status_code == 200
    answer = issued.json()
    username, password = answer["data"]["username"], answer["data"]["password"]
    assert answer["lease_duration"] == 3600
    assert postgres.can_login(username, password)
    renewed = tenant.call("PUT", f"sys/leases/renew/{answer['lease_id']}", {"increment": 7200})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["lease_duration"] >= 7190
    revoked = tenant.call("PUT", f"sys/leases/revoke/{answer['lease_id']}")
    assert revoked.status_code == 204, revoked.text
    assert username not in postgres.role_names()

    # pki: issue, verify against the CA file the block wrote, revoke with the key only
    issued = tenant.call("POST", "pki/issue/app", {"common_name": "web.vaultsync.test", "ttl": "1h"})
    assert issued.status_code == 200
    certificate = parse_issue_answer(issued.json()["data"])
    root_ca = x509.load_pem_x509_certificate((home / "pki-root-ca.pem").read_bytes())
    certificate.certificate.verify_directly_issued_by(root_ca)
    by_serial = tenant.call("POST", "pki/revoke", {"serial_number": certificate.serial_number})
    assert by_serial.status_code == 403, by_serial.text
    with_key = tenant.call(
        "POST",
        "pki/revoke-with-key",
        {"serial_number": certificate.serial_number, "private_key": certificate.private_key_pem},
    )
    assert with_key.status_code == 200, with_key.status_code
    crl = x509.load_pem_x509_crl(requests.get(f"{tenant.base}/pki/crl/pem", timeout=10).content)
    assert crl.get_revoked_certificate_by_serial_number(certificate.certificate.serial_number) is not None
