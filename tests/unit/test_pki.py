"""core/pki.py: a pki/issue answer becomes tls.crt/tls.key/ca.crt and status.certificate; when to issue
the next one; whether a cached certificate can restore a deleted Secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vaultsync.core.lease import safety_margin
from vaultsync.core.pki import (
    MAX_PEM_BYTES,
    CertificateRecord,
    PkiError,
    cached_certificate_problem,
    format_serial,
    next_issue_time,
    parse_issue_answer,
    secret_data,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()


def make_certificate(
    name: str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    not_before: datetime = NOW - timedelta(seconds=30),
    lifetime: timedelta = timedelta(seconds=90),
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def root() -> Issued:
    return make_certificate("root", ca=True, lifetime=timedelta(days=3650))


@pytest.fixture(scope="module")
def intermediate(root: Issued) -> Issued:
    return make_certificate("intermediate", root, ca=True, lifetime=timedelta(days=365))


def vault_answer(leaf: Issued, issuing: Issued, chain: list[Issued]) -> dict[str, Any]:
    """What OpenBao's pki/issue answers in ``data``."""
    return {
        "certificate": leaf.pem,
        "issuing_ca": issuing.pem,
        "ca_chain": [c.pem for c in chain],
        "private_key": leaf.key_pem,
        "private_key_type": "ec",
        "serial_number": format_serial(leaf.certificate.serial_number),
        "expiration": int(leaf.certificate.not_valid_after_utc.timestamp()),
    }


def pems(text: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode())


def test_a_certificate_of_the_root_ca_gets_no_chain_in_tls_crt(root: Issued) -> None:
    leaf = make_certificate("app.vaultsync.test", root)
    data = secret_data(parse_issue_answer(vault_answer(leaf, root, [root])))
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    assert pems(data["tls.crt"]) == [leaf.certificate]
    assert pems(data["ca.crt"]) == [root.certificate]
    assert data["tls.key"].strip() == leaf.key_pem.strip()


def test_tls_crt_is_the_certificate_then_the_intermediates_each_once(
    root: Issued, intermediate: Issued
) -> None:
    leaf = make_certificate("app.vaultsync.test", intermediate)
    # Vault repeats the issuing CA as the chain's first entry: it must not appear twice.
    answer = vault_answer(leaf, intermediate, [intermediate, root])
    data = secret_data(parse_issue_answer(answer))
    chain = pems(data["tls.crt"])
    assert chain == [leaf.certificate, intermediate.certificate]
    assert pems(data["ca.crt"]) == [root.certificate]
    chain[0].verify_directly_issued_by(chain[1])
    chain[1].verify_directly_issued_by(pems(data["ca.crt"])[0])


def test_a_chain_without_the_root_ends_with_the_issuing_ca(intermediate: Issued) -> None:
    leaf = make_certificate("app.vaultsync.test", intermediate)
    data = secret_data(parse_issue_answer(vault_answer(leaf, intermediate, [])))
    assert pems(data["tls.crt"]) == [leaf.certificate, intermediate.certificate]
    assert pems(data["ca.crt"]) == [intermediate.certificate]


def test_format_serial_is_vaults_colon_hex() -> None:
    assert format_serial(0x1F0A) == "1f:0a"
    assert format_serial(0xABC) == "0a:bc"


def test_a_serial_that_is_not_the_certificates_is_refused(root: Issued) -> None:
    leaf = make_certificate("a.vaultsync.test", root)
    answer = vault_answer(leaf, root, [root]) | {"serial_number": "01:02"}
    with pytest.raises(PkiError, match="serial_number '01:02' is not the serial"):
        parse_issue_answer(answer)


def test_a_key_that_is_not_the_certificates_is_refused_without_showing_it(root: Issued) -> None:
    leaf = make_certificate("a.vaultsync.test", root)
    other = make_certificate("b.vaultsync.test", root)
    answer = vault_answer(leaf, root, [root]) | {"private_key": other.key_pem}
    with pytest.raises(PkiError, match="private_key is not the key of the certificate") as error:
        parse_issue_answer(answer)
    assert "PRIVATE KEY" not in str(error.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"certificate": ""}, "certificate is missing"),
        ({"certificate": "not pem"}, "certificate is not PEM"),
        ({"private_key": "garbage"}, "private_key is not an unencrypted PEM private key"),
        ({"ca_chain": "one"}, "ca_chain must be a list"),
        ({"certificate": "A" * (MAX_PEM_BYTES + 1)}, "more than the 65536 allowed"),
    ],
)
def test_broken_answers_are_refused_naming_the_field(
    root: Issued, change: dict[str, Any], message: str
) -> None:
    leaf = make_certificate("a.vaultsync.test", root)
    with pytest.raises(PkiError, match=message):
        parse_issue_answer(vault_answer(leaf, root, [root]) | change)


def test_a_chain_longer_than_the_limit_is_refused(root: Issued) -> None:
    leaf = make_certificate("a.vaultsync.test", root)
    with pytest.raises(PkiError, match="at most 10"):
        parse_issue_answer(vault_answer(leaf, root, [root] * 11))


def test_the_issued_certificates_repr_holds_no_key(root: Issued) -> None:
    leaf = make_certificate("a.vaultsync.test", root)
    issued = parse_issue_answer(vault_answer(leaf, root, [root]))
    assert "PRIVATE" not in repr(issued)
    assert issued.serial_number in repr(issued)


# --- status.certificate and the next issue --------------------------------------------------------------


def record_of(leaf: Issued, root: Issued, issued_at: datetime = NOW) -> CertificateRecord:
    return CertificateRecord.of(parse_issue_answer(vault_answer(leaf, root, [root])), issued_at)


def test_status_certificate_fields_and_round_trip(root: Issued) -> None:
    leaf = make_certificate("a.vaultsync.test", root)
    record = record_of(leaf, root, NOW + timedelta(microseconds=300))
    status = record.to_status()
    assert status == {
        "serialNumber": format_serial(leaf.certificate.serial_number),
        "notBefore": "2024-05-01T11:59:30Z",
        "notAfter": "2024-05-01T12:01:00Z",
        "lastIssued": "2024-05-01T12:00:00Z",
    }
    assert CertificateRecord.from_status(status) == record


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"serialNumber": ""}, "status.certificate.serialNumber"),
        ({"notBefore": "x"}, "status.certificate.notBefore"),
        ({"notAfter": None}, "status.certificate.notAfter"),
        ({"lastIssued": "2024-05-01"}, "status.certificate.lastIssued"),
        ({"notAfter": "2024-05-01T11:00:00Z"}, "status.certificate.notAfter"),
    ],
)
def test_status_certificate_errors_name_the_field(root: Issued, change: dict[str, Any], field: str) -> None:
    status = record_of(make_certificate("a.vaultsync.test", root), root).to_status() | change
    with pytest.raises(PkiError, match=field.replace(".", r"\.")):
        CertificateRecord.from_status(status)


def test_the_next_certificate_comes_at_the_percent_of_its_lifetime_counted_from_the_issue(
    root: Issued,
) -> None:
    # Vault backdates notBefore by 30 s: a 60 s certificate issued at NOW is valid from NOW-30s to NOW+60s.
    leaf = make_certificate("a.vaultsync.test", root, not_before=NOW - timedelta(seconds=30))
    record = record_of(leaf, root)
    at = next_issue_time(record, 67)
    lifetime = timedelta(seconds=60)
    assert NOW + lifetime * 0.67 <= at <= NOW + lifetime - safety_margin(lifetime)


def test_certificates_issued_together_are_spread(root: Issued) -> None:
    times = {next_issue_time(record_of(make_certificate("a.vaultsync.test", root), root)) for _ in range(20)}
    assert len(times) > 10


# --- the cached certificate -----------------------------------------------------------------------------


def test_a_valid_cached_certificate_can_restore_the_secret(root: Issued) -> None:
    leaf = make_certificate("a.vaultsync.test", root)
    issued = parse_issue_answer(vault_answer(leaf, root, [root]))
    data = secret_data(issued)
    assert cached_certificate_problem(data, CertificateRecord.of(issued, NOW), NOW) is None
    as_bytes = {key: value.encode() for key, value in data.items()}
    assert cached_certificate_problem(as_bytes, CertificateRecord.of(issued, NOW), NOW) is None


def test_an_expired_or_ending_cached_certificate_is_not_used(root: Issued) -> None:
    leaf = make_certificate("a.vaultsync.test", root)
    issued = parse_issue_answer(vault_answer(leaf, root, [root]))
    data, record = secret_data(issued), CertificateRecord.of(issued, NOW)
    assert "ends at 2024-05-01T12:01:00Z" in str(
        cached_certificate_problem(data, record, NOW + timedelta(minutes=2))
    )
    ending = cached_certificate_problem(data, record, NOW, margin=timedelta(seconds=61))
    assert ending is not None


def test_a_cached_certificate_of_another_serial_or_key_is_not_used(root: Issued) -> None:
    first = parse_issue_answer(vault_answer(make_certificate("a.vaultsync.test", root), root, [root]))
    second = parse_issue_answer(vault_answer(make_certificate("a.vaultsync.test", root), root, [root]))
    record = CertificateRecord.of(first, NOW)
    assert "is not status.certificate.serialNumber" in str(
        cached_certificate_problem(secret_data(second), record, NOW)
    )
    mixed = secret_data(first) | {"tls.key": secret_data(second)["tls.key"]}
    assert "not the key" in str(cached_certificate_problem(mixed, record, NOW))
    missing = {"tls.crt": secret_data(first)["tls.crt"]}
    assert "tls.key is missing" in str(cached_certificate_problem(missing, record, NOW))


def test_a_cached_certificate_not_yet_valid_is_not_used(root: Issued) -> None:
    leaf = make_certificate("a.vaultsync.test", root, not_before=NOW + timedelta(hours=1))
    issued = parse_issue_answer(vault_answer(leaf, root, [root]))
    problem = cached_certificate_problem(secret_data(issued), CertificateRecord.of(issued, NOW), NOW)
    assert "valid only from" in str(problem)
