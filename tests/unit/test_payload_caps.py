"""Issue 10: caps on what a VaultSecret may hand the operator to check: the number and size of templates
(parser and CRD) and the PEM blocks of a kubernetes.io/tls Secret (finding 4: linear scan, size and block
caps)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from vaultsync.core.errors import INVALID_DATA, INVALID_SPEC, SyncError
from vaultsync.core.shaping import MAX_PEM_BLOCKS, validate_secret_type
from vaultsync.core.spec import MAX_TEMPLATE_LENGTH, MAX_TEMPLATES, MAX_TEMPLATES_LENGTH, parse_spec

CRD = Path(__file__).parents[2] / "crds" / "vaultsecrets.yaml"
TLS = "kubernetes.io/tls"
BODY = base64.b64encode(b"\x30\x82" + b"x" * 60).decode()


def pem(label: str, body: str = BODY) -> bytes:
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


def parse(templates: dict[str, str]) -> None:
    parse_spec({"path": "a/b", "templates": templates}, name="n", default_mount="secret", default_refresh=60)


def refused_spec(templates: dict[str, str], *fragments: str) -> None:
    with pytest.raises(SyncError) as info:
        parse(templates)
    assert info.value.reason == INVALID_SPEC
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message


def test_template_count_is_capped() -> None:
    parse({f"k{i}": "{{ x }}" for i in range(MAX_TEMPLATES)})
    refused_spec({f"k{i}": "{{ x }}" for i in range(MAX_TEMPLATES + 1)}, "spec.templates", "at most 64")


def test_template_length_is_capped() -> None:
    parse({"a": "x" * MAX_TEMPLATE_LENGTH})
    # Finding 9: a 1.3 MB template was recompiled at every retry; now it is refused before compiling.
    refused_spec({"a": "{{ a }" + "x" * 1_300_000}, "spec.templates.a", "at most 65,536")
    many = {
        f"k{i}": "x" * MAX_TEMPLATE_LENGTH for i in range(MAX_TEMPLATES_LENGTH // MAX_TEMPLATE_LENGTH + 1)
    }
    refused_spec(many, "spec.templates", "262,144")


def test_the_crd_says_the_same() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert schema["templates"]["maxProperties"] == MAX_TEMPLATES
    assert schema["templates"]["additionalProperties"]["maxLength"] == MAX_TEMPLATE_LENGTH


def test_the_quadratic_pem_payload_is_scanned_in_one_pass() -> None:
    # The exact payload of finding 4 (51 s in the old regex): no block, so no certificate.
    payload = b"-----BEGIN A-----\n" * (288 * 1024 // 18)
    with pytest.raises(SyncError) as info:
        validate_secret_type(TLS, {"tls.crt": payload, "tls.key": payload})
    assert info.value.reason == INVALID_DATA
    assert "'tls.crt' holds no PEM certificate" in info.value.message


def test_pem_block_count_and_size_are_capped() -> None:
    key = pem("PRIVATE KEY")
    validate_secret_type(TLS, {"tls.crt": pem("CERTIFICATE") * MAX_PEM_BLOCKS, "tls.key": key})
    with pytest.raises(SyncError) as info:
        validate_secret_type(TLS, {"tls.crt": pem("CERTIFICATE") * (MAX_PEM_BLOCKS + 1), "tls.key": key})
    assert info.value.message == f"type {TLS}: 'tls.crt' holds more than 1,000 PEM blocks"
    with pytest.raises(SyncError) as info:
        validate_secret_type(TLS, {"tls.crt": pem("CERTIFICATE"), "tls.key": key + b"#" * (1 << 20)})
    assert info.value.message == f"type {TLS}: 'tls.key' is larger than 1,048,576 bytes"


def test_pem_scan_keeps_the_accepted_forms() -> None:
    encrypted = (
        b"-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: AES-128-CBC,00\r\n\r\n"
        + BODY.encode()
        + b"\r\n-----END RSA PRIVATE KEY-----\r\n"
    )
    chain = b"subject=CN=x\n" + pem("CERTIFICATE") + b"junk\n" + pem("CERTIFICATE")
    validate_secret_type(TLS, {"tls.crt": chain, "tls.key": encrypted})
    restarted = b"-----BEGIN CERTIFICATE-----\n" + pem("CERTIFICATE")  # an unterminated BEGIN, then a block
    validate_secret_type(TLS, {"tls.crt": restarted, "tls.key": encrypted})
    with pytest.raises(SyncError) as info:
        validate_secret_type(TLS, {"tls.crt": pem("CERTIFICATE", "not base64!"), "tls.key": encrypted})
    assert "body that is not valid base64" in info.value.message
