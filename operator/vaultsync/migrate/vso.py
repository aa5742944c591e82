"""HashiCorp's Vault Secrets Operator (``secrets.hashicorp.com/v1beta1``) -> vaultsync.

VaultStaticSecret -> VaultSecret, VaultDynamicSecret -> VaultDynamicSecret, VaultPKISecret ->
VaultPKISecret, VaultConnection -> VaultConnection (cluster-scoped, named ``<namespace>-<name>``). A
VaultAuth has no object of its own here: its login (method, mount, role, ServiceAccount, audience, Vault
namespace) is written into the ``spec.auth`` of every object that refers to it, and its connection into
their ``spec.connection``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync.core.duration import parse_duration
from vaultsync.migrate.gotemplate import TemplateNotTranslated, secrets_map_resolver, translate
from vaultsync.migrate.model import Options, Recorder, duration, new_object

GROUP = "secrets.hashicorp.com"
KINDS = ("VaultStaticSecret", "VaultDynamicSecret", "VaultPKISecret", "VaultAuth", "VaultConnection")
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
DEFAULT_AUTH = "default"


@dataclass
class Auth:
    """A VaultAuth as our objects need it."""

    namespace: str
    spec: dict[str, Any]
    connection: str | None
    problems: list[tuple[str, str]] = field(default_factory=list)


def connection_name(namespace: str | None, name: str) -> str:
    return f"{namespace}-{name}" if namespace else name


def _ref(value: str, namespace: str) -> tuple[str, str]:
    """``name`` or ``namespace/name`` -> (namespace, name)."""
    if "/" in value:
        ns, _, name = value.partition("/")
        return ns, name
    return namespace, value


def index_auths(objects: list[Mapping[str, Any]]) -> dict[tuple[str, str], Auth]:
    auths: dict[tuple[str, str], Auth] = {}
    for obj in objects:
        if obj.get("kind") != "VaultAuth" or not str(obj.get("apiVersion", "")).startswith(GROUP):
            continue
        try:
            meta = obj.get("metadata") or {}
            namespace = str(meta.get("namespace") or "")
            spec = obj.get("spec") or {}
            auth, problems = _auth_spec(spec)
            connection = None
            ref = spec.get("vaultConnectionRef")
            if ref:
                ns, name = _ref(str(ref), namespace)
                connection = connection_name(ns, name)
        except (AttributeError, TypeError, ValueError):
            continue  # malformed: reported as such when the VaultAuth itself is converted
        auths[(namespace, str(meta.get("name")))] = Auth(namespace, auth, connection, problems)
    return auths


def _auth_spec(spec: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    method = spec.get("method") or "kubernetes"
    auth: dict[str, Any] = {}
    if method in ("kubernetes", "jwt"):
        auth["method"] = method
        config = spec.get(method) or {}
        if config.get("role"):
            auth["role"] = config["role"]
        if config.get("serviceAccount"):
            auth["serviceAccountName"] = config["serviceAccount"]
        audiences = config.get("audiences") or []
        if len(audiences) == 1:
            auth["audience"] = audiences[0]
        elif len(audiences) > 1:
            problems.append(
                (
                    f"spec.{method}.audiences",
                    "vaultsync requests tokens for one audience (spec.auth.audience)",
                )
            )
        if config.get("secretRef"):
            problems.append(
                (
                    f"spec.{method}.secretRef",
                    "vaultsync logs in with ServiceAccount tokens from the TokenRequest API, not a JWT kept "
                    "in a Secret: set serviceAccount instead",
                )
            )
        if config.get("tokenExpirationSeconds"):
            problems.append(
                (f"spec.{method}.tokenExpirationSeconds", "the operator chooses the token lifetime itself")
            )
    else:
        problems.append(
            (
                "spec.method",
                f"{method!r} logins are not supported: vaultsync logs in with a Kubernetes ServiceAccount "
                "(methods kubernetes and jwt)",
            )
        )
    if spec.get("mount"):
        auth["mount"] = spec["mount"]
    if spec.get("namespace"):
        auth["vaultNamespace"] = spec["namespace"]
    for key, why in (
        ("params", "vaultsync sends no extra login parameters"),
        ("headers", "vaultsync sends no extra HTTP headers"),
        (
            "vaultAuthGlobalRef",
            "VaultAuthGlobal objects are not converted: write their fields into the VaultAuth",
        ),
        (
            "allowedNamespaces",
            "a converted object carries its own login; restrict namespaces with VaultConnection "
            "allowedNamespaces and Vault roles bound to ServiceAccount namespaces",
        ),
    ):
        if spec.get(key):
            problems.append((f"spec.{key}", why))
    return auth, problems


def _apply_auth(
    spec: Mapping[str, Any],
    namespace: str,
    out: dict[str, Any],
    auths: Mapping[tuple[str, str], Auth],
    rec: Recorder,
    options: Options,
    connections: dict[str, set[str]],
) -> None:
    ref = spec.get("vaultAuthRef")
    if not ref:
        # VSO's default VaultAuth is the operator's own login: the operator's default identity here.
        return
    key = _ref(str(ref), namespace)
    auth = auths.get(key)
    if auth is None:
        rec.unmapped(
            "spec.vaultAuthRef",
            f"VaultAuth {key[0]}/{key[1]} is not among the inputs: convert it together with this object",
        )
        return
    for field_name, why in auth.problems:
        rec.unmapped(f"spec.vaultAuthRef ({key[0]}/{key[1]}: {field_name})", why)
    auth_spec = dict(auth.spec)
    if auth_spec.get("serviceAccountName") and auth.namespace != namespace:
        rec.unmapped(
            "spec.vaultAuthRef",
            f"its ServiceAccount lives in namespace {auth.namespace}; vaultsync logs in as a ServiceAccount "
            "of the object's own namespace: create one here and bind it to the Vault role",
        )
    if auth_spec:
        out["auth"] = auth_spec
    if auth.connection and not options.no_connections:
        out["connection"] = auth.connection
        connections.setdefault(auth.connection, set()).add(namespace)


def _destination(spec: Mapping[str, Any], out: dict[str, Any], rec: Recorder, *, pki: bool = False) -> None:
    dest = spec.get("destination") or {}
    target: dict[str, Any] = {}
    if dest.get("name"):
        target["name"] = dest["name"]
    if dest.get("create"):
        target["creationPolicy"] = "Merge" if dest.get("overwrite") else "Owner"
        if dest.get("overwrite"):
            rec.note(
                "spec.destination.overwrite",
                "mapped to creationPolicy: Merge: vaultsync writes its keys into the existing Secret and "
                "keeps the others (VSO replaces them all); the Secret is not deleted with the object",
            )
    else:
        # VSO writes into a Secret that must already exist and that it did not create.
        target["creationPolicy"] = "Merge"
        rec.note(
            "spec.destination.create",
            "false: mapped to creationPolicy: Merge (the Secret must exist); vaultsync writes its keys and "
            "keeps the others, where VSO replaces them all",
        )
    for key in ("labels", "annotations"):
        if dest.get(key):
            target[key] = dict(dest[key])
    if target:
        out["target"] = target
    if dest.get("type"):
        out["type"] = dest["type"]
    transformation = dest.get("transformation") or {}
    templates = transformation.get("templates") or {}
    if templates:
        translated: dict[str, str] = {}
        for key, template in templates.items():
            text = (template or {}).get("text", "")
            try:
                translated[str(key)] = translate(str(text), secrets_map_resolver())
            except TemplateNotTranslated as exc:
                rec.unmapped(
                    f"spec.destination.transformation.templates.{key}", f"{exc}: rewrite it in Jinja2"
                )
        if translated and not pki:
            out["templates"] = translated
        elif translated:
            rec.unmapped(
                "spec.destination.transformation.templates",
                "VaultPKISecret templates see other variables in vaultsync: rewrite them from docs/api.md",
            )
    includes = transformation.get("includes") or []
    literal = [re.fullmatch(r"\^([-_a-zA-Z0-9]+)\$", str(p)) for p in includes]
    if includes and all(literal) and not pki:
        out["keys"] = [m.group(1) for m in literal if m]
    elif includes:
        rec.unmapped(
            "spec.destination.transformation.includes",
            "only anchored literal patterns (^name$) map to spec.keys; vaultsync has no key patterns",
        )
    if transformation.get("excludes"):
        rec.unmapped(
            "spec.destination.transformation.excludes",
            "vaultsync cannot exclude keys: list the keys to copy in spec.keys instead",
        )
    if transformation.get("transformationRefs"):
        rec.unmapped(
            "spec.destination.transformation.transformationRefs",
            "SecretTransformation objects are not converted: copy their templates into spec.templates",
        )
    if not pki and not transformation.get("excludeRaw"):
        rec.note("spec.destination.transformation.excludeRaw", "vaultsync never writes VSO's _raw key")


def _rollouts(spec: Mapping[str, Any], out: dict[str, Any], rec: Recorder) -> None:
    targets = []
    for i, target in enumerate(spec.get("rolloutRestartTargets") or []):
        if target.get("kind") in ROLLOUT_KINDS:
            targets.append({"kind": target["kind"], "name": target.get("name")})
        else:
            rec.unmapped(
                f"spec.rolloutRestartTargets[{i}].kind",
                f"{target.get('kind')!r}: vaultsync restarts Deployments, StatefulSets and DaemonSets only",
            )
    if targets:
        out["rolloutRestartTargets"] = targets


def _vault_namespace(spec: Mapping[str, Any], out: dict[str, Any]) -> None:
    if spec.get("namespace"):
        out.setdefault("auth", {})["vaultNamespace"] = spec["namespace"]


def _refresh(spec: Mapping[str, Any], out: dict[str, Any], rec: Recorder, *, default_zero: bool) -> None:
    if spec.get("refreshAfter"):
        value = duration(spec["refreshAfter"], "spec.refreshAfter", rec)
        if value is not None:
            out["refreshInterval"] = value
    elif default_zero:
        out["refreshInterval"] = "0"
        rec.note(
            "spec.refreshAfter",
            "unset: VSO does not re-read the secret, so neither does vaultsync (refreshInterval: 0); set "
            "refreshInterval to have changes in Vault picked up",
        )


def convert_static(
    obj: Mapping[str, Any],
    rec: Recorder,
    auths: Mapping[tuple[str, str], Auth],
    options: Options,
    connections: dict[str, set[str]],
) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    spec = obj.get("spec") or {}
    result = new_object("VaultSecret", obj, str(meta.get("name")), namespace or None)
    out: dict[str, Any] = result["spec"]
    out["path"] = spec.get("path")
    if spec.get("mount"):
        out["mount"] = spec["mount"]
    out["kv"] = "v1" if spec.get("type") == "kv-v1" else "v2"
    if spec.get("version"):
        out["version"] = spec["version"]
    _refresh(spec, out, rec, default_zero=True)
    _destination(spec, out, rec)
    _rollouts(spec, out, rec)
    _apply_auth(spec, namespace, out, auths, rec, options, connections)
    _vault_namespace(spec, out)
    if (spec.get("syncConfig") or {}).get("instantUpdates"):
        rec.unmapped(
            "spec.syncConfig.instantUpdates",
            "vaultsync has no Vault event subscription: it reads again every refreshInterval "
            "(set a short one)",
        )
    if spec.get("hmacSecretData") is False:
        rec.note("spec.hmacSecretData", "vaultsync always records an HMAC of the data (status.secretMAC)")
    return result


def convert_dynamic(
    obj: Mapping[str, Any],
    rec: Recorder,
    auths: Mapping[tuple[str, str], Auth],
    options: Options,
    connections: dict[str, set[str]],
) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    spec = obj.get("spec") or {}
    result = new_object("VaultDynamicSecret", obj, str(meta.get("name")), namespace or None)
    out: dict[str, Any] = result["spec"]
    out["mount"], out["path"] = spec.get("mount"), spec.get("path")
    method = str(spec.get("requestHTTPMethod") or "").upper()
    params = spec.get("params") or {}
    if params:
        out["params"] = dict(params)
    if method in ("POST", "PUT") and not params:
        out["params"] = {}
    elif method == "GET" and params:
        rec.unmapped("spec.params", "vaultsync sends params as the body of a POST, never with a GET")
    elif method not in ("", "GET", "POST", "PUT"):
        rec.unmapped("spec.requestHTTPMethod", f"{method}: vaultsync sends GET (no params) or POST")
    percent = spec.get("renewalPercent")
    if percent:
        if 1 <= int(percent) <= 90:
            out["renewalPercent"] = int(percent)
        else:
            rec.unmapped("spec.renewalPercent", f"{percent}: vaultsync renews at 1-90 % of the lease")
    # VSO's default is not to revoke; vaultsync's is to revoke: say it explicitly.
    out["revoke"] = bool(spec.get("revoke", False))
    _refresh(spec, out, rec, default_zero=False)
    _destination(spec, out, rec)
    _rollouts(spec, out, rec)
    _apply_auth(spec, namespace, out, auths, rec, options, connections)
    _vault_namespace(spec, out)
    return result


_PKI_UNMAPPED = {
    "otherSans": "vaultsync asks for commonName, altNames, ipSans and uriSans only",
    "userIDs": "vaultsync asks for commonName, altNames, ipSans and uriSans only",
    "notAfter": "vaultsync sets the lifetime with ttl",
    "excludeCNFromSans": "vaultsync does not send exclude_cn_from_sans",
}


def convert_pki(
    obj: Mapping[str, Any],
    rec: Recorder,
    auths: Mapping[tuple[str, str], Auth],
    options: Options,
    connections: dict[str, set[str]],
) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    spec = obj.get("spec") or {}
    result = new_object("VaultPKISecret", obj, str(meta.get("name")), namespace or None)
    out: dict[str, Any] = result["spec"]
    for key in ("mount", "role", "commonName", "altNames", "ipSans", "uriSans", "issuerRef"):
        if spec.get(key):
            out[key] = spec[key]
    ttl = None
    if spec.get("ttl"):
        ttl = duration(spec["ttl"], "spec.ttl", rec)
        if ttl is not None:
            out["ttl"] = ttl
    if spec.get("expiryOffset"):
        _expiry_offset(spec, ttl, out, rec)
    out["revoke"] = bool(spec.get("revoke", False))
    if spec.get("format") not in (None, "", "pem"):
        rec.unmapped("spec.format", f"{spec['format']}: vaultsync writes PEM only")
    if spec.get("privateKeyFormat") not in (None, "", "der"):
        rec.unmapped(
            "spec.privateKeyFormat",
            f"{spec['privateKeyFormat']}: vaultsync writes the key as Vault's default",
        )
    for key, why in _PKI_UNMAPPED.items():
        if spec.get(key):
            rec.unmapped(f"spec.{key}", why)
    _destination(spec, out, rec, pki=True)
    dest_type = (spec.get("destination") or {}).get("type")
    if dest_type != "kubernetes.io/tls":
        out.pop("type", None)
        rec.unmapped(
            "spec.destination.type",
            f"{dest_type or 'Opaque'}: VSO writes the keys certificate, private_key, issuing_ca, "
            "ca_chain, ...; "
            "vaultsync writes a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt): update what reads it",
        )
    if spec.get("clear") and not (spec.get("destination") or {}).get("create"):
        rec.unmapped("spec.clear", "vaultsync removes only its own keys from a Secret it did not create")
    _rollouts(spec, out, rec)
    _apply_auth(spec, namespace, out, auths, rec, options, connections)
    _vault_namespace(spec, out)
    return result


def _expiry_offset(spec: Mapping[str, Any], ttl: str | None, out: dict[str, Any], rec: Recorder) -> None:
    """VSO renews ``expiryOffset`` before the end; vaultsync at a share of the lifetime: known only when
    the ttl is."""
    try:
        offset = parse_duration(str(spec["expiryOffset"]))
        lifetime = parse_duration(ttl) if ttl else None
    except ValueError:
        lifetime = None
        offset = 0.0
    if lifetime:
        percent = round(100 * (1 - offset / lifetime))
        if 1 <= percent <= 90:
            out["renewalPercent"] = percent
            return
    rec.unmapped(
        "spec.expiryOffset",
        "vaultsync renews at a share of the lifetime (renewalPercent, 1-90); with a ttl it is computed, "
        "here it cannot be: set renewalPercent",
    )


def convert_connection(obj: Mapping[str, Any], rec: Recorder, allowed: set[str]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    spec = obj.get("spec") or {}
    result = new_object("VaultConnection", obj, connection_name(namespace, str(meta.get("name"))), None)
    out: dict[str, Any] = result["spec"]
    out["address"] = spec.get("address")
    if spec.get("tlsServerName"):
        out["tlsServerName"] = spec["tlsServerName"]
    if spec.get("caCertSecretRef"):
        out["caSecretRef"] = {"namespace": namespace, "name": spec["caCertSecretRef"], "key": "ca.crt"}
    out["allowedNamespaces"] = sorted({*allowed, *([namespace] if namespace else [])})
    for key, why in (
        ("caCertPath", "a file in the peer operator's pod: put the CA in a Secret and use caSecretRef"),
        ("skipTLSVerify", "vaultsync always verifies Vault's certificate: give it the CA (caSecretRef)"),
        ("headers", "vaultsync sends no extra HTTP headers"),
        ("timeout", "the request timeout is the operator setting VAULTSYNC_VAULT_TIMEOUT"),
    ):
        if spec.get(key):
            rec.unmapped(f"spec.{key}", why)
    return result
