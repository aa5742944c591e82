"""The dev stack's short-lived credentials, proven against the real components: OpenBao's database engine
issues PostgreSQL roles that log in, whose lease renews (in PostgreSQL too) and whose revocation drops the
role; OpenBao's pki engine issues certificates whose chain verifies against the mount's CA and whose
revocation puts the serial on the CRL. Vault's real answers also go through core/lease.py and core/pki.py,
so the pure logic is checked against what OpenBao actually says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from cryptography import x509

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
