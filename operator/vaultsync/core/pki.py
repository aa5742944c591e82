"""Certificates from Vault's PKI engine (VaultPKISecret), as pure logic: no I/O, no clock of its own.

* :func:`parse_issue_answer` checks the ``data`` of a ``POST {mount}/issue/{role}`` answer (bounded sizes,
  PEM that parses, the serial that Vault names is the certificate's) and gives an :class:`IssuedCertificate`;
* :func:`secret_data` is the Secret it becomes: ``tls.crt`` (the certificate, then the chain: every CA
  certificate Vault sent except a self-signed root, each once), ``tls.key``, and ``ca.crt`` (the top of the
  chain Vault sent, the certificate that verifies it);
* :class:`CertificateRecord` is ``status.certificate`` (``serialNumber``, ``notBefore``, ``notAfter``,
  ``lastIssued``) with ``to_status`` / ``from_status``;
* :func:`next_issue_time`: ``renewalPercent`` of the lifetime, with jitter (the same rule as leases);
* :func:`cached_certificate_problem`: whether cached Secret data still holds the certificate of the record,
  valid and matching its key, so that a Secret deleted by hand is restored without issuing a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from vaultsync.core.lease import (
    DEFAULT_RENEWAL_PERCENT,
    LeaseError,
    format_time,
    parse_time,
    renewal_time,
    stable_unit,
)

__all__ = [
    "MAX_CHAIN_CERTIFICATES",
    "MAX_PEM_BYTES",
    "CertificateRecord",
    "IssuedCertificate",
    "PkiError",
    "cached_certificate_problem",
    "format_serial",
    "next_issue_time",
    "parse_issue_answer",
    "secret_data",
]

# What one answer may hold: Vault's own answers are a few KiB; more is refused before any parsing.
MAX_PEM_BYTES = 64 * 1024
MAX_CHAIN_CERTIFICATES = 10
STATUS_FIELD = "status.certificate"
PEM_CERTIFICATE_END = "-----END CERTIFICATE-----"


class PkiError(ValueError):
    """A PKI answer or record that cannot be used; the message names the field and never holds a key."""


def format_serial(serial: int) -> str:
    """Vault's spelling of a serial number: lowercase hex bytes joined by colons (``1f:0a:...``)."""
    raw = f"{serial:x}"
    if len(raw) % 2:
        raw = "0" + raw
    return ":".join(raw[i : i + 2] for i in range(0, len(raw), 2))


def _normalise_serial(serial: str) -> str:
    return serial.strip().lower().replace("-", ":")


def _text(data: Mapping[str, Any], key: str, field: str) -> str:
    value = data.get(key)
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str) or not value.strip():
        raise PkiError(f"{field}{key} is missing or empty")
    if len(value) > MAX_PEM_BYTES:
        raise PkiError(f"{field}{key} is {len(value)} bytes, more than the {MAX_PEM_BYTES} allowed")
    return value.strip()


def _certificates(pem: str, field: str) -> list[x509.Certificate]:
    if pem.count(PEM_CERTIFICATE_END) > MAX_CHAIN_CERTIFICATES + 1:
        raise PkiError(f"{field} holds more than {MAX_CHAIN_CERTIFICATES + 1} certificates")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise PkiError(f"{field} is not PEM-encoded X.509 certificates") from exc
    return certificates


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode().strip()


def _self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _not_before(certificate: x509.Certificate) -> datetime:
    return certificate.not_valid_before_utc


def _not_after(certificate: x509.Certificate) -> datetime:
    return certificate.not_valid_after_utc


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    private_key_pem: str
    chain: tuple[x509.Certificate, ...]  # the CA certificates Vault sent, issuing CA first, deduplicated
    serial_number: str

    @property
    def not_before(self) -> datetime:
        return _not_before(self.certificate)

    @property
    def not_after(self) -> datetime:
        return _not_after(self.certificate)

    def __repr__(self) -> str:  # the private key stays out of logs and tracebacks
        return f"IssuedCertificate(serial_number={self.serial_number!r}, not_after={self.not_after})"


def parse_issue_answer(data: Mapping[str, Any]) -> IssuedCertificate:
    """The ``data`` of Vault's answer to ``{mount}/issue/{role}``: ``certificate``, ``private_key``,
    ``issuing_ca``, ``ca_chain`` (a list, or absent), ``serial_number``."""
    field = "the pki/issue answer's "
    leaf_pem = _text(data, "certificate", field)
    leaves = _certificates(leaf_pem, f"{field}certificate")
    leaf = leaves[0]
    key_pem = _text(data, "private_key", field)
    chain_pems: list[str] = []
    raw_chain = data.get("ca_chain") or []
    if not isinstance(raw_chain, list) or len(raw_chain) > MAX_CHAIN_CERTIFICATES:
        raise PkiError(f"{field}ca_chain must be a list of at most {MAX_CHAIN_CERTIFICATES} certificates")
    for index, entry in enumerate(raw_chain):
        chain_pems.append(_text({"pem": entry}, "pem", f"{field}ca_chain[{index}] "))
    if data.get("issuing_ca"):
        chain_pems.insert(0, _text(data, "issuing_ca", field))
    chain: list[x509.Certificate] = []
    for pem in [*chain_pems, *(_pem(extra) for extra in leaves[1:])]:
        for certificate in _certificates(pem, f"{field}ca_chain"):
            if certificate != leaf and certificate not in chain:
                chain.append(certificate)
    if len(chain) > MAX_CHAIN_CERTIFICATES:
        raise PkiError(f"{field}chain holds more than {MAX_CHAIN_CERTIFICATES} CA certificates")
    serial = format_serial(leaf.serial_number)
    named = data.get("serial_number")
    if isinstance(named, str) and named and _normalise_serial(named) != serial:
        raise PkiError(f"{field}serial_number {named!r} is not the serial of its certificate ({serial})")
    _check_key_matches(key_pem, leaf, f"{field}private_key")
    return IssuedCertificate(leaf, key_pem, tuple(chain), serial)


def _check_key_matches(key_pem: str, certificate: x509.Certificate, field: str) -> None:
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{field} is not an unencrypted PEM private key") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != certificate.public_key().public_bytes(
        encoding, public
    ):
        raise PkiError(f"{field} is not the key of the certificate")


def secret_data(issued: IssuedCertificate) -> dict[str, str]:
    """``tls.crt``: the certificate, then each CA certificate of the chain except a self-signed root
    (clients hold that one), each once; ``tls.key``; ``ca.crt``: the top of the chain Vault sent."""
    intermediates = [c for c in issued.chain if not _self_signed(c)]
    top = issued.chain[-1] if issued.chain else issued.certificate
    tls_crt = "\n".join(_pem(c) for c in [issued.certificate, *intermediates]) + "\n"
    return {
        "tls.crt": tls_crt,
        "tls.key": issued.private_key_pem.strip() + "\n",
        "ca.crt": _pem(top) + "\n",
    }


@dataclass(frozen=True)
class CertificateRecord:
    """``status.certificate``."""

    serial_number: str
    not_before: datetime
    not_after: datetime
    last_issued: datetime

    @classmethod
    def of(cls, issued: IssuedCertificate, now: datetime) -> CertificateRecord:
        return cls(
            issued.serial_number,
            issued.not_before,
            issued.not_after,
            now.astimezone(UTC).replace(microsecond=0),
        )

    def to_status(self) -> dict[str, str]:
        return {
            "serialNumber": self.serial_number,
            "notBefore": format_time(self.not_before),
            "notAfter": format_time(self.not_after),
            "lastIssued": format_time(self.last_issued),
        }

    @classmethod
    def from_status(cls, status: Any) -> CertificateRecord:
        if not isinstance(status, Mapping):
            raise PkiError(f"{STATUS_FIELD} must be an object, not {type(status).__name__}")
        serial = status.get("serialNumber")
        if not isinstance(serial, str) or not serial:
            raise PkiError(f"{STATUS_FIELD}.serialNumber must be a non-empty string")
        try:
            record = cls(
                _normalise_serial(serial),
                parse_time(status.get("notBefore"), f"{STATUS_FIELD}.notBefore"),
                parse_time(status.get("notAfter"), f"{STATUS_FIELD}.notAfter"),
                parse_time(status.get("lastIssued"), f"{STATUS_FIELD}.lastIssued"),
            )
        except LeaseError as exc:
            raise PkiError(str(exc)) from exc
        if record.not_after <= record.not_before:
            raise PkiError(f"{STATUS_FIELD}.notAfter must be later than notBefore")
        return record

    @property
    def lifetime_start(self) -> datetime:
        """Vault backdates ``notBefore`` (30 s by default): the lifetime is counted from the issue."""
        return max(self.not_before, min(self.last_issued, self.not_after))


def next_issue_time(record: CertificateRecord, percent: int = DEFAULT_RENEWAL_PERCENT) -> datetime:
    """When to issue the next certificate: ``percent`` of the lifetime (from the issue, not the
    backdated ``notBefore``) plus a jitter fixed by the serial number, before the end minus a margin."""
    return renewal_time(record.lifetime_start, record.not_after, percent, stable_unit(record.serial_number))


def cached_certificate_problem(
    data: Mapping[str, str | bytes],
    record: CertificateRecord,
    now: datetime,
    margin: timedelta = timedelta(0),
) -> str | None:
    """None when ``data`` (the Secret data last written: ``tls.crt``, ``tls.key``) still holds the
    certificate of ``record``, valid at ``now`` for at least ``margin`` more and with its own key; else
    why not (the caller then issues a new certificate)."""
    try:
        certificates = _certificates(_text(data, "tls.crt", "cached "), "cached tls.crt")
        certificate = certificates[0]
        serial = format_serial(certificate.serial_number)
        if serial != _normalise_serial(record.serial_number):
            return f"the cached certificate's serial {serial} is not {STATUS_FIELD}.serialNumber"
        if now < _not_before(certificate):
            return f"the cached certificate is valid only from {format_time(_not_before(certificate))}"
        if now + margin >= _not_after(certificate):
            return f"the cached certificate ends at {format_time(_not_after(certificate))}"
        _check_key_matches(_text(data, "tls.key", "cached "), certificate, "cached tls.key")
    except PkiError as exc:
        return str(exc)
    return None
