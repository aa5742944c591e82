"""External Secrets (``external-secrets.io``, v1 and v1beta1) with the Vault provider -> vaultsync.

SecretStore / ClusterSecretStore (``provider.vault``) -> a VaultConnection (address, Vault namespace, CA,
client certificate) named ``<namespace>-<name>`` or ``<name>``; its login goes into the ``spec.auth`` of
every object that uses the store. ExternalSecret -> VaultSecret (one source per Vault path it reads),
ClusterExternalSecret -> ClusterVaultSecretSet whose template is the converted ExternalSecret.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync.migrate.gotemplate import (
    TemplateNotTranslated,
    secret_lookup,
    translate,
    variables_resolver,
)
from vaultsync.migrate.model import Options, Recorder, duration, new_object, split_mount

GROUP = "external-secrets.io"
KINDS = ("ExternalSecret", "ClusterExternalSecret", "SecretStore", "ClusterSecretStore")


@dataclass
class Store:
    kind: str
    namespace: str
    name: str
    mount: str | None
    kv: str
    auth: dict[str, Any]
    connection: str | None
    problems: list[tuple[str, str]] = field(default_factory=list)
    service_account_namespace: str | None = None


def store_key(kind: str, namespace: str, name: str) -> tuple[str, str, str]:
    return (kind, "" if kind == "ClusterSecretStore" else namespace, name)


def connection_name(kind: str, namespace: str, name: str) -> str:
    return name if kind == "ClusterSecretStore" else f"{namespace}-{name}"


def index_stores(objects: list[Mapping[str, Any]]) -> dict[tuple[str, str, str], Store]:
    stores: dict[tuple[str, str, str], Store] = {}
    for obj in objects:
        kind = obj.get("kind")
        if kind not in ("SecretStore", "ClusterSecretStore") or not _ours(obj):
            continue
        try:
            meta = obj.get("metadata") or {}
            namespace, name = str(meta.get("namespace") or ""), str(meta.get("name"))
            vault = ((obj.get("spec") or {}).get("provider") or {}).get("vault")
            if not isinstance(vault, Mapping):
                continue  # listed as not mapped when the store itself is converted
            auth, problems, sa_namespace = _auth(vault.get("auth") or {})
            stores[store_key(str(kind), namespace, name)] = Store(
                kind=str(kind),
                namespace=namespace,
                name=name,
                mount=str(vault["path"]).strip("/") if vault.get("path") else None,
                kv=str(vault.get("version") or "v2"),
                auth=auth,
                connection=connection_name(str(kind), namespace, name),
                problems=problems,
                service_account_namespace=sa_namespace,
            )
        except (AttributeError, TypeError, ValueError):
            continue  # malformed: reported as such when the store itself is converted
    return stores


def _ours(obj: Mapping[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).startswith(GROUP + "/")


_REFUSED_LOGINS = {
    "tokenSecretRef": "a static Vault token in a Secret",
    "appRole": "AppRole",
    "ldap": "LDAP",
    "userPass": "userpass",
    "cert": "TLS certificate",
    "iam": "AWS IAM",
    "gcp": "GCP",
}


def _auth(auth: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]], str | None]:
    out: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    sa_namespace = None
    for key, what in _REFUSED_LOGINS.items():
        if auth.get(key):
            problems.append(
                (
                    f"spec.provider.vault.auth.{key}",
                    f"{what} logins are not supported: vaultsync logs in as a Kubernetes ServiceAccount "
                    "(kubernetes or jwt auth)",
                )
            )
    kubernetes = auth.get("kubernetes")
    jwt = auth.get("jwt")
    sa_ref: Mapping[str, Any] | None = None
    audiences: list[Any] = []
    if isinstance(kubernetes, Mapping):
        out["method"] = "kubernetes"
        out["mount"] = kubernetes.get("mountPath") or "kubernetes"
        if kubernetes.get("role"):
            out["role"] = kubernetes["role"]
        sa_ref = kubernetes.get("serviceAccountRef")
        audiences = list((sa_ref or {}).get("audiences") or [])
        if kubernetes.get("secretRef") and not sa_ref:
            problems.append(
                (
                    "spec.provider.vault.auth.kubernetes.secretRef",
                    "vaultsync does not log in with a token kept in a Secret: it requests one for a "
                    "ServiceAccount (serviceAccountRef), or uses its own",
                )
            )
    elif isinstance(jwt, Mapping):
        out["method"] = "jwt"
        out["mount"] = jwt.get("path") or "jwt"
        if jwt.get("role"):
            out["role"] = jwt["role"]
        token = jwt.get("kubernetesServiceAccountToken") or {}
        sa_ref = token.get("serviceAccountRef")
        audiences = list(token.get("audiences") or [])
        if jwt.get("secretRef"):
            problems.append(
                (
                    "spec.provider.vault.auth.jwt.secretRef",
                    "vaultsync does not log in with a JWT kept in a Secret: "
                    "use kubernetesServiceAccountToken",
                )
            )
    if sa_ref and sa_ref.get("name"):
        out["serviceAccountName"] = sa_ref["name"]
        sa_namespace = sa_ref.get("namespace")
    if len(audiences) == 1:
        out["audience"] = audiences[0]
    elif len(audiences) > 1:
        problems.append(
            ("spec.provider.vault.auth (audiences)", "vaultsync requests tokens for one audience")
        )
    if auth.get("namespace"):
        out["vaultNamespace"] = auth["namespace"]
    return out, problems, sa_namespace


def convert_store(obj: Mapping[str, Any], rec: Recorder, allowed: set[str]) -> dict[str, Any] | None:
    meta = obj.get("metadata") or {}
    kind, namespace, name = str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name"))
    spec = obj.get("spec") or {}
    vault = (spec.get("provider") or {}).get("vault")
    if not isinstance(vault, Mapping):
        providers = ", ".join(sorted(spec.get("provider") or {})) or "none"
        rec.unmapped("spec.provider", f"provider {providers}: vaultsync reads from Vault/OpenBao only")
        return None
    result = new_object("VaultConnection", obj, connection_name(kind, namespace, name), None)
    out: dict[str, Any] = result["spec"]
    out["address"] = vault.get("server")
    if vault.get("namespace"):
        out["namespace"] = vault["namespace"]
    if vault.get("caBundle"):
        try:
            out["caBundle"] = base64.b64decode(str(vault["caBundle"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            rec.unmapped("spec.provider.vault.caBundle", "not base64 of a PEM bundle")
    provider = vault.get("caProvider") or {}
    if provider:
        if provider.get("type") == "Secret":
            out["caSecretRef"] = {
                "namespace": provider.get("namespace") or namespace,
                "name": provider.get("name"),
                "key": provider.get("key") or "ca.crt",
            }
        else:
            rec.unmapped("spec.provider.vault.caProvider", "only a Secret can hold the CA (caSecretRef)")
    tls = vault.get("tls") or {}
    if tls:
        cert, key = tls.get("certSecretRef") or {}, tls.get("keySecretRef") or {}
        if (
            cert.get("name")
            and cert.get("name") == key.get("name")
            and (cert.get("key") or "tls.crt", key.get("key") or "tls.key") == ("tls.crt", "tls.key")
        ):
            out["clientCertSecretRef"] = {
                "namespace": cert.get("namespace") or namespace,
                "name": cert["name"],
            }
        else:
            rec.unmapped(
                "spec.provider.vault.tls",
                "the client certificate and key must be one Secret with the keys tls.crt and tls.key",
            )
    if kind == "SecretStore":
        out["allowedNamespaces"] = sorted({namespace, *allowed})
    else:
        _cluster_store_namespaces(spec, out, rec)
    for key, why in (
        ("headers", "vaultsync sends no extra HTTP headers"),
        ("readYourWrites", "vaultsync only reads; it sends no X-Vault-Index headers"),
        ("forwardInconsistent", "vaultsync only reads; it sends no X-Vault-Inconsistent headers"),
    ):
        if vault.get(key):
            rec.unmapped(f"spec.provider.vault.{key}", why)
    if spec.get("controller"):
        rec.unmapped(
            "spec.controller", "vaultsync has no controller classes: every operator serves the object"
        )
    if spec.get("retrySettings"):
        rec.note("spec.retrySettings", "retries back off by the operator settings VAULTSYNC_BACKOFF_BASE/MAX")
    return result


def _cluster_store_namespaces(spec: Mapping[str, Any], out: dict[str, Any], rec: Recorder) -> None:
    conditions = spec.get("conditions") or []
    if not conditions:
        out["allowedNamespaces"] = ["*"]  # a ClusterSecretStore without conditions serves every namespace
        return
    names: list[str] = []
    for i, condition in enumerate(conditions):
        names.extend(str(n) for n in condition.get("namespaces") or [])
        for key in ("namespaceSelector", "namespaceRegexes"):
            if condition.get(key):
                rec.unmapped(
                    f"spec.conditions[{i}].{key}",
                    "allowedNamespaces takes names and glob patterns: list the namespaces",
                )
    out["allowedNamespaces"] = sorted(set(names))


# ExternalSecret -----------------------------------------------------------------------------------------
@dataclass
class _Source:
    mount: str
    path: str
    version: int | None


def _remote_path(key: str, store: Store) -> tuple[str, str]:
    """ESO's key -> (mount, path): the store's ``path`` is the mount; without it, the key's first segment."""
    key = key.strip("/")
    if store.mount:
        if key.startswith(store.mount + "/"):
            key = key[len(store.mount) + 1 :]
        return store.mount, key
    return split_mount(key)


def convert_external_secret_spec(
    spec: Mapping[str, Any],
    namespace: str,
    name: str,
    rec: Recorder,
    stores: Mapping[tuple[str, str, str], Store],
    options: Options,
    connections: dict[str, set[str]],
    field_prefix: str = "spec",
) -> dict[str, Any] | None:
    """Our spec for an ExternalSecret's spec, or None when it has no Vault store among the inputs."""
    ref = spec.get("secretStoreRef") or {}
    kind = str(ref.get("kind") or "SecretStore")
    store = stores.get(store_key(kind, namespace, str(ref.get("name"))))
    if store is None:
        rec.unmapped(
            f"{field_prefix}.secretStoreRef",
            f"{kind} {ref.get('name')!r} with the vault provider is not among the inputs: "
            "convert them together",
        )
        return None
    out: dict[str, Any] = {}
    for field_name, why in store.problems:
        rec.unmapped(f"{field_prefix}.secretStoreRef ({kind} {store.name}: {field_name})", why)
    if store.auth:
        out["auth"] = dict(store.auth)
    if store.service_account_namespace and store.service_account_namespace != namespace:
        rec.unmapped(
            f"{field_prefix}.secretStoreRef",
            f"the store logs in as a ServiceAccount of namespace {store.service_account_namespace}; "
            "vaultsync "
            "logs in as a ServiceAccount of the object's own namespace",
        )
    if store.connection and not options.no_connections:
        out["connection"] = store.connection
        connections.setdefault(store.connection, set()).add(namespace)

    sources: dict[tuple[str, str, int | None], _Source] = {}
    copied: list[str] = []  # keys copied as they are
    values: dict[str, str] = {}  # secretKey -> Jinja expression of its value
    extracts = False

    def source(key: str, version: Any, where: str) -> bool:
        mount, path = _remote_path(key, store)
        if not path:
            rec.unmapped(where, f"{key!r} names no secret below the mount {mount!r}")
            return False
        number = None
        if version not in (None, ""):
            try:
                number = int(str(version))
            except ValueError:
                rec.unmapped(f"{where}.version", f"{version!r}: vaultsync pins KV v2 versions by number")
        sources.setdefault((mount, path, number), _Source(mount, path, number))
        return True

    for i, item in enumerate(spec.get("data") or []):
        where = f"{field_prefix}.data[{i}]"
        remote = item.get("remoteRef") or {}
        if not _plain_remote(remote, item, where, rec) or not source(
            str(remote.get("key", "")), remote.get("version"), f"{where}.remoteRef.key"
        ):
            continue
        secret_key = str(item.get("secretKey"))
        prop = remote.get("property")
        if not prop:
            values[secret_key] = "{{ secret|tojson }}"
            rec.note(f"{where}.remoteRef.property", "unset: the whole secret as JSON, in Vault's key order")
        elif "." in str(prop) or "*" in str(prop) or "#" in str(prop):
            rec.unmapped(f"{where}.remoteRef.property", f"{prop!r} is a gjson path: use a template instead")
            continue
        elif secret_key == prop:
            copied.append(secret_key)
            values[secret_key] = secret_lookup(secret_key)
        else:
            values[secret_key] = secret_lookup(str(prop))
    for i, item in enumerate(spec.get("dataFrom") or []):
        where = f"{field_prefix}.dataFrom[{i}]"
        for key, why in (
            (
                "find",
                "vaultsync has no search by name or tag: list the paths, "
                "or use a VaultSecretSet (generators.paths)",
            ),
            ("rewrite", "vaultsync does not rename keys by pattern: use templates"),
            ("sourceRef", "generators are not converted"),
        ):
            if item.get(key):
                rec.unmapped(f"{where}.{key}", why)
        extract = item.get("extract")
        if not isinstance(extract, Mapping):
            continue
        if not _plain_remote(extract, {}, f"{where}.extract", rec):
            continue
        if extract.get("property"):
            rec.unmapped(
                f"{where}.extract.property",
                "vaultsync copies the keys of a whole secret, not of a nested object",
            )
            continue
        if source(str(extract.get("key", "")), extract.get("version"), f"{where}.extract.key"):
            extracts = True

    if not sources:
        rec.unmapped(
            f"{field_prefix}.data", "nothing that vaultsync can read: no data or dataFrom entry mapped"
        )
        return None
    listed = list(sources.values())
    kv = "v1" if store.kv == "v1" else "v2"
    if len(listed) == 1:
        only = listed[0]
        out.update({"mount": only.mount, "path": only.path, "kv": kv})
        if only.version is not None:
            out["version"] = only.version
    else:
        out["sources"] = [
            {"mount": s.mount, "path": s.path, "kv": kv, **({"version": s.version} if s.version else {})}
            for s in listed
        ]
        rec.note(
            f"{field_prefix}.data",
            f"{len(listed)} Vault paths are merged into one Secret: a key present at two of them is a "
            "KeyConflict in vaultsync (ESO takes the entries one by one)",
        )
    renamed = {k: v for k, v in values.items() if k not in copied}
    if extracts and (copied or renamed) and len(listed) > 1:
        rec.unmapped(
            f"{field_prefix}.dataFrom",
            "dataFrom (every key of a path) together with data from other paths: vaultsync copies either "
            "every key of all its sources or the listed ones; split it into two VaultSecrets",
        )
    target = spec.get("target") or {}
    _target(target, name, out, rec, field_prefix)
    template = target.get("template")
    translated = _template(template, values, rec, f"{field_prefix}.target.template") if template else {}
    if translated and (template or {}).get("mergePolicy") != "Merge":
        # ESO's default: the template replaces the fetched keys.
        out["templates"] = translated
        out["templatesOnly"] = True
    else:
        if renamed or translated:
            out["templates"] = {**renamed, **translated}
        if not extracts:
            if copied:
                out["keys"] = copied
            elif renamed:
                out["templatesOnly"] = True
    _refresh(spec, out, rec, field_prefix)
    return out


def _plain_remote(remote: Mapping[str, Any], item: Mapping[str, Any], where: str, rec: Recorder) -> bool:
    ok = True
    if remote.get("metadataPolicy") == "Fetch":
        rec.unmapped(f"{where}.metadataPolicy", "vaultsync does not copy KV custom metadata")
        ok = False
    if remote.get("decodingStrategy") not in (None, "", "None"):
        rec.unmapped(
            f"{where}.decodingStrategy",
            f"{remote['decodingStrategy']}: use spec.decodeBase64Keys (base64 of a copied key) by hand",
        )
        ok = False
    if remote.get("conversionStrategy") not in (None, "", "Default"):
        rec.unmapped(f"{where}.conversionStrategy", f"{remote['conversionStrategy']} is not supported")
        ok = False
    if item.get("sourceRef"):
        rec.unmapped(f"{where}.sourceRef", "vaultsync reads every entry through the object's own store")
        ok = False
    return ok


def _target(target: Mapping[str, Any], name: str, out: dict[str, Any], rec: Recorder, prefix: str) -> None:
    ours: dict[str, Any] = {}
    if target.get("name") and target["name"] != name:
        ours["name"] = target["name"]
    policy = target.get("creationPolicy") or "Owner"
    if policy in ("Owner", "Orphan", "Merge"):
        if policy != "Owner":
            ours["creationPolicy"] = policy
    else:
        rec.unmapped(f"{prefix}.target.creationPolicy", f"{policy}: vaultsync always writes a Secret")
    deletion = target.get("deletionPolicy") or "Retain"
    if deletion != "Retain":
        rec.unmapped(
            f"{prefix}.target.deletionPolicy",
            f"{deletion}: vaultsync keeps the Secret as last synced when the Vault secret is gone (Retain)",
        )
    for key, why in (
        ("immutable", "vaultsync keeps the Secret in step with Vault; it never marks it immutable"),
        ("manifest", "vaultsync writes Secrets only"),
    ):
        if target.get(key):
            rec.unmapped(f"{prefix}.target.{key}", why)
    template = target.get("template") or {}
    meta = template.get("metadata") or {}
    for key in ("labels", "annotations"):
        if meta.get(key):
            ours[key] = dict(meta[key])
    if meta.get("finalizers"):
        rec.unmapped(
            f"{prefix}.target.template.metadata.finalizers", "vaultsync adds no finalizers to Secrets"
        )
    if template.get("type"):
        out["type"] = template["type"]
    if ours:
        out["target"] = ours


def _template(
    template: Mapping[str, Any], values: dict[str, str], rec: Recorder, where: str
) -> dict[str, str]:
    if template.get("engineVersion") == "v1":
        rec.unmapped(f"{where}.engineVersion", "v1 templates are not translated: rewrite them in Jinja2")
        return {}
    if template.get("templateFrom"):
        rec.unmapped(
            f"{where}.templateFrom", "templates from ConfigMaps or Secrets: copy them into spec.templates"
        )
    translated: dict[str, str] = {}
    for key, text in (template.get("data") or {}).items():
        try:
            translated[str(key)] = translate(str(text), variables_resolver(values))
        except TemplateNotTranslated as exc:
            rec.unmapped(f"{where}.data.{key}", f"{exc}: rewrite it in Jinja2 (Vault keys are secret['key'])")
    return translated


def _refresh(spec: Mapping[str, Any], out: dict[str, Any], rec: Recorder, prefix: str) -> None:
    policy = spec.get("refreshPolicy") or "Periodic"
    if policy in ("CreatedOnce", "OnChange"):
        out["refreshInterval"] = "0"
        if policy == "CreatedOnce":
            rec.note(f"{prefix}.refreshPolicy", "CreatedOnce: synced once, and again when the spec changes")
    elif spec.get("refreshInterval") is not None:
        value = duration(spec["refreshInterval"], f"{prefix}.refreshInterval", rec)
        if value is not None:
            out["refreshInterval"] = value
    if spec.get("syncWindows"):
        rec.unmapped(f"{prefix}.syncWindows", "vaultsync has no sync windows: it reads every refreshInterval")


def convert_external_secret(
    obj: Mapping[str, Any],
    rec: Recorder,
    stores: Mapping[tuple[str, str, str], Store],
    options: Options,
    connections: dict[str, set[str]],
) -> dict[str, Any] | None:
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name"))
    spec = convert_external_secret_spec(
        obj.get("spec") or {}, namespace, name, rec, stores, options, connections
    )
    if spec is None:
        return None
    result = new_object("VaultSecret", obj, name, namespace or None)
    result["spec"] = spec
    return result


def convert_cluster_external_secret(
    obj: Mapping[str, Any],
    rec: Recorder,
    stores: Mapping[tuple[str, str, str], Store],
    options: Options,
    connections: dict[str, set[str]],
) -> dict[str, Any] | None:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name"))
    spec = obj.get("spec") or {}
    child_name = str(spec.get("externalSecretName") or name)
    child = convert_external_secret_spec(
        spec.get("externalSecretSpec") or {},
        "",
        child_name,
        rec,
        stores,
        options,
        connections,
        field_prefix="spec.externalSecretSpec",
    )
    if child is None:
        return None
    if "connection" in child:
        connections.setdefault(child["connection"], set()).add("*")
    result = new_object("ClusterVaultSecretSet", obj, name, None)
    child_meta: dict[str, Any] = {"name": child_name}
    for key in ("labels", "annotations"):
        if (spec.get("externalSecretMetadata") or {}).get(key):
            child_meta[key] = dict(spec["externalSecretMetadata"][key])
    namespaces: dict[str, Any] = {}
    if spec.get("namespaces"):
        namespaces["names"] = list(spec["namespaces"])
    selectors = [s for s in [spec.get("namespaceSelector"), *(spec.get("namespaceSelectors") or [])] if s]
    if len(selectors) == 1 and not selectors[0].get("matchExpressions"):
        namespaces["matchLabels"] = dict(selectors[0].get("matchLabels") or {})
    elif selectors:
        rec.unmapped(
            "spec.namespaceSelectors",
            "one selector of matchLabels only: vaultsync selects namespaces by names and one matchLabels",
        )
    if not namespaces:
        rec.unmapped("spec.namespaces", "no namespaces selected: set generators.namespaces by hand")
    result["spec"] = {
        "template": {"metadata": child_meta, "spec": child},
        "generators": {"namespaces": namespaces},
    }
    if spec.get("refreshTime"):
        rec.note(
            "spec.refreshTime", "vaultsync follows namespaces as they come and go (a watch), not on a timer"
        )
    return result
