"""Shaping the Secret end to end (docs/shaping.md): templates, key selection, fan-in, Secret types, binary and
non-string values, size and key checks, labels and annotations, and the type change of an existing Secret.

Everything goes through the session's real operator process, real kube-apiserver and real OpenBao; each test
works in its own `t-...` namespace. Secret values never show in statuses, Events or the operator's log.
"""

from __future__ import annotations

import base64
import datetime
import json
import random
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from kubernetes import client

from tests.e2e.conftest import ValueFactory
from tests.e2e.kube import (
    create_vaultsecret,
    delete_vaultsecret,
    events_for,
    get_secret,
    get_vaultsecret,
    patch_vaultsecret,
    ready,
    secret_data,
    wait_for,
    wait_ready,
)
from tests.e2e.operator_process import OperatorProcess
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

pytestmark = pytest.mark.usefixtures("operator")

MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER = "vaultsync.io/owner"


# Helpers ----------------------------------------------------------------------------------------------------
def status_of(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (get_vaultsecret(api, namespace, name) or {}).get("status") or {}
    return status


def event_texts(api: client.ApiClient, namespace: str, name: str) -> list[tuple[str, str]]:
    return [(e.reason or "", e.message or "") for e in events_for(api, namespace, name)]


def assert_not_shown(api: client.ApiClient, namespace: str, name: str, values: Iterable[str | bytes]) -> None:
    """No value (nor its base64) appears in the VaultSecret's status or its Events."""
    shown = json.dumps(status_of(api, namespace, name)) + json.dumps(event_texts(api, namespace, name))
    for value in values:
        raw = value.encode() if isinstance(value, str) else value
        for form in (raw.decode("utf-8", "replace"), base64.b64encode(raw).decode()):
            assert form not in shown


def failed(api: client.ApiClient, namespace: str, name: str, reason: str, timeout: float = 30.0) -> str:
    """Waits for Ready=False with `reason` and a Warning Event of that reason; returns the message."""
    condition = wait_ready(api, namespace, name, status="False", reason=reason, timeout=timeout)
    wait_for(
        lambda: any(r == reason for r, _ in event_texts(api, namespace, name)),
        timeout=timeout,
        what=f"a {reason} Event",
    )
    message: str = condition["message"]
    return message


def kube_writes(stack: LocalStack, namespace: str, name: str, resource: str = "secrets") -> list[str]:
    """Verbs of the successful writes the operator (not the tests) made to one object, in order."""
    verbs = []
    if not stack.kube_audit_log.exists():
        return verbs
    for line in stack.kube_audit_log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        ref = entry.get("objectRef") or {}
        if (
            ref.get("resource") == resource
            and ref.get("namespace") == namespace
            and ref.get("name") == name
            and not ref.get("subresource")
            and "OpenAPI-Generator" not in (entry.get("userAgent") or "")
            and (entry.get("responseStatus") or {}).get("code", 0) < 300
        ):
            verbs.append(entry["verb"])
    return verbs


def tls_pair(common_name: str) -> tuple[bytes, bytes]:
    """A fresh self-signed certificate and its RSA private key, both PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def pem_body_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


@pytest.fixture
def tmp_files(tmp_path: Path) -> Iterator[Callable[[str, bytes], Path]]:
    def write(name: str, content: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    yield write


# Templates --------------------------------------------------------------------------------------------------
def test_database_url_template_from_three_keys(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    password = f"p@ss:w/rd-{secrets.token_hex(8)}"
    new_value.registry.update({password, urllib.parse.quote(password, safe="")})
    vault_admin.kv_put(
        f"e2e/{namespace}/db", {"username": "app", "password": password, "host": "db.shop.internal"}
    )
    create_vaultsecret(
        kube_api,
        namespace,
        "shop-db",
        {
            "path": f"e2e/{namespace}/db",
            "templates": {
                "DATABASE_URL": "postgresql://{{ username }}:{{ password | urlquote }}@{{ host }}:5432/shop",
            },
        },
    )
    wait_ready(kube_api, namespace, "shop-db")
    data = secret_data(kube_api, namespace, "shop-db") or {}
    assert sorted(data) == ["DATABASE_URL", "host", "password", "username"]
    assert data["password"] == password.encode()
    url = data["DATABASE_URL"].decode()
    assert url == f"postgresql://app:{urllib.parse.quote(password, safe='')}@db.shop.internal:5432/shop"
    parsed = urllib.parse.urlsplit(url)
    assert (parsed.scheme, parsed.username, parsed.hostname, parsed.port, parsed.path) == (
        "postgresql",
        "app",
        "db.shop.internal",
        5432,
        "/shop",
    )
    assert urllib.parse.unquote(parsed.password or "") == password
    assert_not_shown(kube_api, namespace, "shop-db", [password])


def test_templates_only_keeps_only_the_templated_keys(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    password = new_value()
    vault_admin.kv_put(
        f"e2e/{namespace}/db", {"username": "app", "password": password, "host": "db", "db password": "x"}
    )
    create_vaultsecret(
        kube_api,
        namespace,
        "url-only",
        {
            "path": f"e2e/{namespace}/db",
            "templates": {
                "DATABASE_URL": "postgresql://{{ username }}:{{ password }}@{{ host }}/shop",
                # A Vault key that cannot be a Secret key is readable through `secret` and is not copied.
                "db-password": "{{ secret['db password'] }}",
                "info": "{{ namespace }}/{{ name }} v{{ metadata.version }}",
            },
            "templatesOnly": True,
        },
    )
    wait_ready(kube_api, namespace, "url-only")
    assert secret_data(kube_api, namespace, "url-only") == {
        "DATABASE_URL": f"postgresql://app:{password}@db/shop".encode(),
        "db-password": b"x",
        "info": f"{namespace}/url-only v1".encode(),
    }


def test_template_error_names_the_template_key_never_a_value(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    password = new_value()
    vault_admin.kv_put(f"e2e/{namespace}/db", {"username": "app", "password": password})
    create_vaultsecret(
        kube_api,
        namespace,
        "typo",
        {"path": f"e2e/{namespace}/db", "templates": {"DATABASE_URL": "{{ usernme }}:{{ password }}"}},
    )
    # A lookup whose name is a value: the message must not show the name it looked up.
    create_vaultsecret(
        kube_api,
        namespace,
        "lookup",
        {"path": f"e2e/{namespace}/db", "templates": {"token": "{{ secret[password] }}"}},
    )
    message = failed(kube_api, namespace, "typo", "TemplateError")
    assert "'DATABASE_URL'" in message
    assert "usernme" in message
    lookup = failed(kube_api, namespace, "lookup", "TemplateError")
    assert "'token'" in lookup
    for name in ("typo", "lookup"):
        assert get_secret(kube_api, namespace, name) is None
        assert_not_shown(kube_api, namespace, name, [password])

    # Fixing the template makes it Ready.
    patch_vaultsecret(
        kube_api,
        namespace,
        "typo",
        {"spec": {"templates": {"DATABASE_URL": "{{ username }}:{{ password }}"}}},
    )
    wait_ready(kube_api, namespace, "typo")
    assert (secret_data(kube_api, namespace, "typo") or {})["DATABASE_URL"] == f"app:{password}".encode()


SANDBOX_ESCAPES = {
    "mro": "{{ ''.__class__.__mro__ }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler": "{{ cycler.__init__.__globals__.os.environ }}",
    "lipsum": "{{ lipsum.__globals__['os'].environ }}",
    "context": "{{ self._TemplateReference__context }}",
    "include": "{% include '/etc/passwd' %}",
    "mutate": "{{ secret.update({'a': 1}) }}",
    "format": "{{ '{0.__class__}'.format(secret) }}",
}


def test_sandbox_escape_attempts_are_template_errors(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    vault_admin.kv_put(f"e2e/{namespace}/app", {"password": new_value()})
    for name, template in SANDBOX_ESCAPES.items():
        create_vaultsecret(
            kube_api,
            namespace,
            name,
            {"path": f"e2e/{namespace}/app", "templates": {"out": template}, "templatesOnly": True},
        )
    for name in SANDBOX_ESCAPES:
        message = failed(kube_api, namespace, name, "TemplateError")
        assert message.startswith("template 'out': "), message
        assert get_secret(kube_api, namespace, name) is None
        # Nothing of the operator's environment or of Python's internals leaks into the message.
        for forbidden in ("VAULT_ADDR", "KUBECONFIG", "<class", "root"):
            assert forbidden not in message, (name, message)


# Key selection ----------------------------------------------------------------------------------------------
def test_keys_selects_and_a_missing_listed_key_is_named(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    password, extra = new_value(), new_value()
    vault_admin.kv_put(f"e2e/{namespace}/db", {"username": "app", "password": password, "extra": extra})
    create_vaultsecret(
        kube_api, namespace, "picked", {"path": f"e2e/{namespace}/db", "keys": ["username", "password"]}
    )
    wait_ready(kube_api, namespace, "picked")
    assert secret_data(kube_api, namespace, "picked") == {"username": b"app", "password": password.encode()}
    version = (get_secret(kube_api, namespace, "picked") or client.V1Secret()).metadata.resource_version

    patch_vaultsecret(
        kube_api, namespace, "picked", {"spec": {"keys": ["username", "password", "api_token"]}}
    )
    message = failed(kube_api, namespace, "picked", "InvalidData")
    assert "'api_token'" in message
    assert "spec.keys" in message
    # The Secret is kept exactly as it was.
    secret = get_secret(kube_api, namespace, "picked")
    assert secret is not None
    assert secret.metadata.resource_version == version
    assert secret_data(kube_api, namespace, "picked") == {"username": b"app", "password": password.encode()}
    assert_not_shown(kube_api, namespace, "picked", [password, extra])


# Secret types -----------------------------------------------------------------------------------------------
def test_tls_secret_is_usable_by_a_tls_server(
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    namespace: str,
    new_value: ValueFactory,
    tmp_files: Callable[[str, bytes], Path],
) -> None:
    cert_pem, key_pem = tls_pair("shop.example.test")
    new_value.registry.update(pem_body_lines(key_pem)[1:3])
    # Vault keys named the way PKI tooling names them; templates give them the names the type needs.
    vault_admin.kv_put(
        f"e2e/{namespace}/web",
        {"certificate": cert_pem.decode(), "private_key": key_pem.decode(), "owner": "web-team"},
    )
    create_vaultsecret(
        kube_api,
        namespace,
        "web-tls",
        {
            "path": f"e2e/{namespace}/web",
            "type": "kubernetes.io/tls",
            "templates": {"tls.crt": "{{ certificate }}", "tls.key": "{{ private_key }}"},
            "templatesOnly": True,
        },
    )
    wait_ready(kube_api, namespace, "web-tls")
    secret = get_secret(kube_api, namespace, "web-tls")
    assert secret is not None
    assert secret.type == "kubernetes.io/tls"
    data = secret_data(kube_api, namespace, "web-tls") or {}
    assert sorted(data) == ["tls.crt", "tls.key"]
    assert data["tls.crt"] == cert_pem
    assert data["tls.key"] == key_pem

    # What an Ingress controller does with it: load the pair into a TLS server context.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_files("tls.crt", data["tls.crt"]), tmp_files("tls.key", data["tls.key"]))
    loaded = x509.load_pem_x509_certificate(data["tls.crt"])
    assert loaded.subject.rfc4514_string() == "CN=shop.example.test"
    assert_not_shown(kube_api, namespace, "web-tls", pem_body_lines(key_pem)[1:3])


def test_tls_secret_missing_its_key_is_invalid_data_and_nothing_is_written(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    cert_pem, _ = tls_pair("half.example.test")
    vault_admin.kv_put(f"e2e/{namespace}/half", {"tls.crt": cert_pem.decode()})
    # Not PEM at all: the base64 text of a PEM (a common mistake).
    vault_admin.kv_put(
        f"e2e/{namespace}/b64",
        {"tls.crt": base64.b64encode(cert_pem).decode(), "tls.key": new_value()},
    )
    for name in ("half", "b64"):
        create_vaultsecret(
            kube_api, namespace, name, {"path": f"e2e/{namespace}/{name}", "type": "kubernetes.io/tls"}
        )
    message = failed(kube_api, namespace, "half", "InvalidData")
    assert "kubernetes.io/tls" in message
    assert "'tls.key'" in message
    message = failed(kube_api, namespace, "b64", "InvalidData")
    assert "'tls.crt' holds no PEM certificate" in message
    for name in ("half", "b64"):
        assert get_secret(kube_api, namespace, name) is None


def test_dockerconfigjson_built_with_tojson_and_b64encode(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    token = new_value("ghp")
    vault_admin.kv_put(f"e2e/{namespace}/registry", {"username": "robot", "token": token})
    template = (
        "{{ {'auths': {'ghcr.io': {'username': username, 'password': token,"
        " 'auth': (username ~ ':' ~ token) | b64encode}}} | tojson }}"
    )
    create_vaultsecret(
        kube_api,
        namespace,
        "registry",
        {
            "path": f"e2e/{namespace}/registry",
            "type": "kubernetes.io/dockerconfigjson",
            "target": {"name": "ghcr-pull"},
            "templates": {".dockerconfigjson": template},
            "templatesOnly": True,
        },
    )
    wait_ready(kube_api, namespace, "registry")
    secret = get_secret(kube_api, namespace, "ghcr-pull")
    assert secret is not None
    assert secret.type == "kubernetes.io/dockerconfigjson"
    data = secret_data(kube_api, namespace, "ghcr-pull") or {}
    assert list(data) == [".dockerconfigjson"]
    config = json.loads(data[".dockerconfigjson"])
    assert config == {
        "auths": {
            "ghcr.io": {
                "username": "robot",
                "password": token,
                "auth": base64.b64encode(f"robot:{token}".encode()).decode(),
            }
        }
    }
    # What the kubelet does with it: decode `auth` into user and password.
    user, _, secret_token = base64.b64decode(config["auths"]["ghcr.io"]["auth"]).decode().partition(":")
    assert (user, secret_token) == ("robot", token)
    assert_not_shown(kube_api, namespace, "registry", [token])


def test_changing_the_type_replaces_the_secret(
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    stack: LocalStack,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    password = new_value()
    vault_admin.kv_put(f"e2e/{namespace}/ftp", {"username": "ftp", "password": password})
    created = create_vaultsecret(kube_api, namespace, "ftp", {"path": f"e2e/{namespace}/ftp"})
    wait_ready(kube_api, namespace, "ftp")
    before = get_secret(kube_api, namespace, "ftp")
    assert before is not None
    assert before.type == "Opaque"

    patch_vaultsecret(kube_api, namespace, "ftp", {"spec": {"type": "kubernetes.io/basic-auth"}})
    after = wait_for(
        lambda: (s := get_secret(kube_api, namespace, "ftp")) and s.type == "kubernetes.io/basic-auth" and s,
        timeout=30,
        what="the Secret to be re-created as kubernetes.io/basic-auth",
    )
    assert after.metadata.uid != before.metadata.uid
    assert secret_data(kube_api, namespace, "ftp") == {"username": b"ftp", "password": password.encode()}
    refs = after.metadata.owner_references or []
    assert [(r.kind, r.name, r.uid) for r in refs] == [("VaultSecret", "ftp", created["metadata"]["uid"])]
    assert after.metadata.labels[MANAGED_BY] == "vaultsync"
    assert after.metadata.annotations[OWNER] == "ftp"
    wait_for(
        lambda: any(r == "SecretReplaced" for r, _ in event_texts(kube_api, namespace, "ftp")),
        timeout=15,
        what="a SecretReplaced Event",
    )
    condition = wait_ready(kube_api, namespace, "ftp")
    assert condition["observedGeneration"] == 2
    # Exactly: the first create, then one delete (guarded by the old uid) and one create; the watcher seeing
    # the old Secret go away is not mistaken for drift.
    wait_for(
        lambda: kube_writes(stack, namespace, "ftp") == ["create", "delete", "create"],
        timeout=15,
        what="the audit log to show create, delete, create",
    )
    assert "DriftRepaired" not in [r for r, _ in event_texts(kube_api, namespace, "ftp")]
    # It stays put (a further sync finds it up to date).
    patch_vaultsecret(
        kube_api, namespace, "ftp", {"metadata": {"annotations": {"vaultsync.io/refresh": "1"}}}
    )
    wait_for(
        lambda: (
            status_of(kube_api, namespace, "ftp").get("observedGeneration") == 2
            and ready(kube_api, namespace, "ftp")
        ),
        timeout=15,
    )
    time.sleep(2)  # room for a spurious write to show up in the audit log
    assert kube_writes(stack, namespace, "ftp") == ["create", "delete", "create"]
    assert (get_secret(kube_api, namespace, "ftp") or client.V1Secret()).metadata.uid == after.metadata.uid


# Fan-in -----------------------------------------------------------------------------------------------------
def test_three_path_fan_in_with_versions_per_source(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    password, smtp, old_key, new_key = new_value(), new_value(), new_value(), new_value()
    vault_admin.kv_put(f"e2e/{namespace}/db", {"username": "app", "password": "first"})
    vault_admin.kv_put(f"e2e/{namespace}/db", {"username": "app", "password": password})  # version 2
    vault_admin.kv_put(f"e2e/{namespace}/api", {"api-key": old_key})  # version 1, pinned
    vault_admin.kv_put(f"e2e/{namespace}/api", {"api-key": new_key})  # version 2
    vault_admin.kv1_put(f"e2e/{namespace}/smtp", {"smtp_host": "mail", "smtp_password": smtp}, mount="kv1")
    create_vaultsecret(
        kube_api,
        namespace,
        "merged",
        {
            "sources": [
                {"path": f"e2e/{namespace}/db"},
                {"path": f"e2e/{namespace}/smtp", "mount": "kv1", "kv": "v1"},
                {"path": f"e2e/{namespace}/api", "version": 1},
            ],
            "templates": {"versions": "{{ metadata.sources | tojson }}"},
        },
    )
    wait_ready(kube_api, namespace, "merged")
    data = secret_data(kube_api, namespace, "merged") or {}
    versions = json.loads(data.pop("versions"))
    assert data == {
        "username": b"app",
        "password": password.encode(),
        "smtp_host": b"mail",
        "smtp_password": smtp.encode(),
        "api-key": old_key.encode(),
    }
    assert status_of(kube_api, namespace, "merged")["vaultVersion"] == {
        f"secret/e2e/{namespace}/db": 2,
        f"secret/e2e/{namespace}/api": 1,
    }
    assert {label: v["version"] for label, v in versions.items()} == {
        f"secret/e2e/{namespace}/db": 2,
        f"kv1/e2e/{namespace}/smtp": None,
        f"secret/e2e/{namespace}/api": 1,
    }
    assert_not_shown(kube_api, namespace, "merged", [password, smtp, old_key, new_key])


def test_key_conflict_names_the_key_and_both_paths_and_writes_nothing(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    one, two = new_value(), new_value()
    vault_admin.kv_put(f"e2e/{namespace}/app", {"username": "app", "password": one})
    vault_admin.kv1_put(f"e2e/{namespace}/shared", {"password": two, "smtp": "mail"}, mount="kv1")
    create_vaultsecret(
        kube_api,
        namespace,
        "clash",
        {
            "sources": [
                {"path": f"e2e/{namespace}/app"},
                {"path": f"e2e/{namespace}/shared", "mount": "kv1", "kv": "v1"},
            ]
        },
    )
    message = failed(kube_api, namespace, "clash", "KeyConflict")
    assert "'password'" in message
    assert f"secret/e2e/{namespace}/app" in message
    assert f"kv1/e2e/{namespace}/shared" in message
    assert get_secret(kube_api, namespace, "clash") is None
    assert_not_shown(kube_api, namespace, "clash", [one, two])


def test_a_later_key_conflict_keeps_the_synced_secret_untouched(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    one, two = new_value(), new_value()
    vault_admin.kv_put(f"e2e/{namespace}/a", {"user": "app", "password": one})
    vault_admin.kv_put(f"e2e/{namespace}/b", {"token": two})
    create_vaultsecret(
        kube_api,
        namespace,
        "fan",
        {"sources": [{"path": f"e2e/{namespace}/a"}, {"path": f"e2e/{namespace}/b"}], "refreshInterval": "0"},
    )
    wait_ready(kube_api, namespace, "fan")
    before = get_secret(kube_api, namespace, "fan")
    assert before is not None
    expected = {"user": b"app", "password": one.encode(), "token": two.encode()}
    assert secret_data(kube_api, namespace, "fan") == expected

    vault_admin.kv_put(f"e2e/{namespace}/b", {"token": two, "password": new_value()})
    patch_vaultsecret(
        kube_api, namespace, "fan", {"metadata": {"annotations": {"vaultsync.io/refresh": "now"}}}
    )
    message = failed(kube_api, namespace, "fan", "KeyConflict")
    assert "'password'" in message
    assert f"secret/e2e/{namespace}/a and secret/e2e/{namespace}/b" in message
    assert "kept as last synced" in message
    after = get_secret(kube_api, namespace, "fan")
    assert after is not None
    assert after.metadata.resource_version == before.metadata.resource_version
    assert secret_data(kube_api, namespace, "fan") == expected
    # The status still describes the Secret that is there.
    status = status_of(kube_api, namespace, "fan")
    assert status["secretName"] == "fan"
    assert status["vaultVersion"] == {f"secret/e2e/{namespace}/a": 1, f"secret/e2e/{namespace}/b": 1}


# Values -----------------------------------------------------------------------------------------------------
def test_binary_round_trip_byte_for_byte(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    rng = random.Random(secrets.randbits(64))
    keystore = bytes(range(256)) * 8 + rng.randbytes(2048)  # 4 KiB holding every byte value
    keystore = bytes(rng.sample(keystore, len(keystore)))
    keytab = rng.randbytes(1000) + b"\x00\xff\r\n"
    assert len(keystore) == 4096
    assert set(keystore) == set(range(256))
    vault_admin.kv_put(
        f"e2e/{namespace}/keystore",
        {
            "keystore.p12": base64.b64encode(keystore).decode(),
            # Line-wrapped base64 without padding is accepted too.
            "app.keytab": base64.encodebytes(keytab).decode().replace("=", ""),
            "password": "changeit",
        },
    )
    create_vaultsecret(
        kube_api,
        namespace,
        "keystore",
        {"path": f"e2e/{namespace}/keystore", "decodeBase64Keys": ["keystore.p12", "app.keytab"]},
    )
    wait_ready(kube_api, namespace, "keystore")
    data = secret_data(kube_api, namespace, "keystore") or {}
    assert data["keystore.p12"] == keystore
    assert data["app.keytab"] == keytab
    assert data["password"] == b"changeit"

    # Text that is not base64 is reported, naming the key; the Secret is kept.
    vault_admin.kv_put(
        f"e2e/{namespace}/keystore",
        {"keystore.p12": "not base64!", "app.keytab": base64.b64encode(keytab).decode(), "password": "x"},
    )
    patch_vaultsecret(
        kube_api, namespace, "keystore", {"metadata": {"annotations": {"vaultsync.io/refresh": "1"}}}
    )
    message = failed(kube_api, namespace, "keystore", "InvalidData")
    assert "'keystore.p12'" in message
    assert "base64" in message
    assert (secret_data(kube_api, namespace, "keystore") or {})["keystore.p12"] == keystore


def test_non_string_values_become_text_as_documented(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str
) -> None:
    vault_admin.kv_put(
        f"e2e/{namespace}/config",
        {
            "port": 5432,
            "negative": -3,
            "ratio": 1.5,
            "tls": True,
            "debug": False,
            "nothing": None,
            "nested": {"a": 1, "b": [True, None], "name": "ключ"},
            "hosts": ["a", "b"],
            "mixed": [1, "two", {"x": 1.25}],
        },
    )
    create_vaultsecret(
        kube_api,
        namespace,
        "config",
        {
            "path": f"e2e/{namespace}/config",
            # Templates see the original values.
            "templates": {"next-port": "{{ port + 1 }}", "hosts.json": "{{ hosts | tojson }}"},
        },
    )
    wait_ready(kube_api, namespace, "config")
    assert secret_data(kube_api, namespace, "config") == {
        "port": b"5432",
        "negative": b"-3",
        "ratio": b"1.5",
        "tls": b"true",
        "debug": b"false",
        "nothing": b"null",
        "nested": '{"a":1,"b":[true,null],"name":"ключ"}'.encode(),
        "hosts": b'["a","b"]',
        "mixed": b'[1,"two",{"x":1.25}]',
        "next-port": b"5433",
        "hosts.json": b'["a","b"]',
    }


def test_a_vault_key_that_cannot_be_a_secret_key_is_named(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    value = new_value()
    vault_admin.kv_put(f"e2e/{namespace}/odd", {"db password": value, "user": "app"})
    create_vaultsecret(kube_api, namespace, "odd", {"path": f"e2e/{namespace}/odd"})
    message = failed(kube_api, namespace, "odd", "InvalidData")
    assert "'db password'" in message
    assert "cannot be Secret keys" in message
    assert get_secret(kube_api, namespace, "odd") is None
    assert_not_shown(kube_api, namespace, "odd", [value])

    # Selecting the other keys makes it Ready without the odd one.
    patch_vaultsecret(kube_api, namespace, "odd", {"spec": {"keys": ["user"]}})
    wait_ready(kube_api, namespace, "odd")
    assert secret_data(kube_api, namespace, "odd") == {"user": b"app"}


def test_a_secret_over_one_mebibyte_is_refused_with_its_size(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str
) -> None:
    chunk = "x" * (600 * 1024)
    vault_admin.kv_put(f"e2e/{namespace}/big", {"part1": chunk, "part2": chunk})
    create_vaultsecret(kube_api, namespace, "big", {"path": f"e2e/{namespace}/big"})
    message = failed(kube_api, namespace, "big", "InvalidData")
    size = 2 * (600 * 1024) + len("part1") + len("part2")
    assert f"{size:,} bytes" in message
    assert "1,048,576" in message
    assert get_secret(kube_api, namespace, "big") is None

    # One of the two fits.
    patch_vaultsecret(kube_api, namespace, "big", {"spec": {"keys": ["part1"]}})
    wait_ready(kube_api, namespace, "big")
    assert (secret_data(kube_api, namespace, "big") or {})["part1"] == chunk.encode()


# Labels and annotations -------------------------------------------------------------------------------------
def test_target_labels_and_annotations_are_kept_in_sync(
    kube_api: client.ApiClient, vault_admin: VaultAdmin, namespace: str, new_value: ValueFactory
) -> None:
    vault_admin.kv_put(f"e2e/{namespace}/db", {"password": new_value()})
    create_vaultsecret(
        kube_api,
        namespace,
        "labelled",
        {
            "path": f"e2e/{namespace}/db",
            "target": {
                "labels": {"tier": "db", "team": "shop", MANAGED_BY: "helm"},
                "annotations": {"description": "Shop DB, from Vault", "reloader.stakater.com/match": "true"},
            },
        },
    )
    wait_ready(kube_api, namespace, "labelled")
    secret = get_secret(kube_api, namespace, "labelled")
    assert secret is not None
    labels, annotations = secret.metadata.labels, secret.metadata.annotations
    assert labels["tier"] == "db"
    assert labels["team"] == "shop"
    assert labels[MANAGED_BY] == "vaultsync"  # the bookkeeping label is never clobbered
    assert annotations["description"] == "Shop DB, from Vault"
    assert annotations["reloader.stakater.com/match"] == "true"
    assert annotations[OWNER] == "labelled"

    # Someone else labels and annotates the Secret.
    client.CoreV1Api(kube_api).patch_namespaced_secret(
        "labelled",
        namespace,
        {"metadata": {"labels": {"backup": "daily"}, "annotations": {"example.com/note": "mine"}}},
    )
    # Change one, remove one label and one annotation, add one annotation.
    patch_vaultsecret(
        kube_api,
        namespace,
        "labelled",
        {
            "spec": {
                "target": {
                    "labels": {"tier": "cache", "team": None},
                    "annotations": {"description": None, "example.com/owner-team": "payments"},
                }
            }
        },
    )

    def updated() -> client.V1Secret | None:
        current = get_secret(kube_api, namespace, "labelled")
        return current if current and current.metadata.labels.get("tier") == "cache" else None

    secret = wait_for(updated, timeout=30, what="the new labels on the Secret")
    labels, annotations = secret.metadata.labels, secret.metadata.annotations
    assert "team" not in labels
    assert "description" not in annotations
    assert annotations["example.com/owner-team"] == "payments"
    assert annotations["reloader.stakater.com/match"] == "true"
    assert labels["backup"] == "daily"  # others' labels and annotations survive
    assert annotations["example.com/note"] == "mine"
    assert labels[MANAGED_BY] == "vaultsync"
    assert annotations[OWNER] == "labelled"
    wait_ready(kube_api, namespace, "labelled")
    # A spec change is not drift: no DriftRepaired Event.
    assert [r for r, _ in event_texts(kube_api, namespace, "labelled")] == ["Synced"]

    # The operator's own annotation cannot be set through the spec.
    patch_vaultsecret(
        kube_api, namespace, "labelled", {"spec": {"target": {"annotations": {OWNER: "someone-else"}}}}
    )
    message = failed(kube_api, namespace, "labelled", "InvalidSpec")
    assert "vaultsync.io/" in message
    secret = get_secret(kube_api, namespace, "labelled")
    assert secret is not None
    assert secret.metadata.annotations[OWNER] == "labelled"
    assert secret.metadata.labels["tier"] == "cache"


# Templates off the event loop ----------------------------------------------------------------------------
# ~20 s of CPU without the renderer's CPU-time limit; stopped after 1 s of CPU with it.
HEAVY_TEMPLATE = "{% for i in range(99999) %}{% set x = range(200)|map('string')|join %}{% endfor %}"


def vault_read_answered(stack: LocalStack, path: str) -> bool:
    if not stack.vault_audit_log.exists():
        return False
    for line in stack.vault_audit_log.read_text(errors="replace").splitlines():
        if f'"{path}"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("type") == "response" and (entry.get("request") or {}).get("path") == path:
            return True
    return False


def test_a_cpu_heavy_template_does_not_hold_up_other_vaultsecrets(
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    stack: LocalStack,
    namespace: str,
    new_value: ValueFactory,
) -> None:
    password = new_value()
    vault_admin.kv_put(f"e2e/{namespace}/heavy", {"n": "1"})
    vault_admin.kv_put(f"e2e/{namespace}/light", {"username": "app", "password": password})
    heavy = [f"heavy-{i}" for i in range(3)]
    lights = {
        "light-plain": {"path": f"e2e/{namespace}/light"},
        "light-templated": {"path": f"e2e/{namespace}/light", "templates": {"user": "{{ username|upper }}"}},
    }
    try:
        for name in heavy:
            create_vaultsecret(
                kube_api,
                namespace,
                name,
                {
                    "path": f"e2e/{namespace}/heavy",
                    "templates": {"out": HEAVY_TEMPLATE},
                    "refreshInterval": "0",
                },
            )
        # Vault has answered the heavy ones' read: their templates are rendering now.
        wait_for(
            lambda: vault_read_answered(stack, f"secret/data/e2e/{namespace}/heavy"),
            timeout=30,
            what="the operator to read the heavy VaultSecrets' path",
        )
        started = time.monotonic()
        for name, spec in lights.items():
            create_vaultsecret(kube_api, namespace, name, spec)

        ready_after: dict[str, float] = {}
        first_heavy_failure: float | None = None
        deadline = started + 60
        while len(ready_after) < len(lights) and time.monotonic() < deadline:
            for name in lights:
                condition = ready(kube_api, namespace, name)
                if name not in ready_after and condition and condition["status"] == "True":
                    ready_after[name] = time.monotonic() - started
            for name in heavy:
                condition = ready(kube_api, namespace, name)
                if first_heavy_failure is None and condition and condition["reason"] == "TemplateError":
                    first_heavy_failure = time.monotonic() - started
            time.sleep(0.05)
        assert sorted(ready_after) == sorted(lights), ready_after
        # Both synced while the heavy templates were still rendering, and promptly.
        assert first_heavy_failure is None or max(ready_after.values()) < first_heavy_failure, (
            ready_after,
            first_heavy_failure,
        )
        assert max(ready_after.values()) < 10, ready_after
        assert secret_data(kube_api, namespace, "light-plain") == {
            "username": b"app",
            "password": password.encode(),
        }
        assert (secret_data(kube_api, namespace, "light-templated") or {})["user"] == b"APP"

        # The heavy ones really were heavy: the renderer stopped them at its CPU-time limit.
        for name in heavy:
            message = failed(kube_api, namespace, name, "TemplateError", timeout=60)
            assert message.startswith("template 'out': rendering took more than 1 s of CPU time"), message
            assert get_secret(kube_api, namespace, name) is None
    finally:
        for name in heavy:
            delete_vaultsecret(kube_api, namespace, name)


# The operator log -------------------------------------------------------------------------------------------
def test_operator_log_holds_no_shaped_secret_value(
    operator: OperatorProcess, secret_values: set[str]
) -> None:
    """Runs last in this module: the whole log so far against every value the tests wrote to Vault."""
    assert secret_values
    log = operator.log_text()
    assert "TemplateError" in log
    leaked = [v for v in secret_values if v in log or base64.b64encode(v.encode()).decode() in log]
    assert leaked == []
