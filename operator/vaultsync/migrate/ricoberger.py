"""ricoberger's vault-secrets-operator (``ricoberger.de/v1alpha1`` VaultSecret) -> vaultsync.

``secretEngine`` kv (the default) -> VaultSecret; ``pki`` -> VaultPKISecret. Its ``path`` starts with
the mount (``kvv2/app/db``);
whether a mount is KV version 1 is found out by that operator at run time, so it is an option here
(``--kv1-mount``), KV v2 otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vaultsync.migrate.gotemplate import TemplateNotTranslated, secrets_map_resolver, translate
from vaultsync.migrate.model import Options, Recorder, duration, new_object, split_mount

GROUP = "ricoberger.de"
KINDS = ("VaultSecret",)

_PKI_OPTIONS = {"common_name": "commonName", "issuer_ref": "issuerRef"}
_PKI_LIST_OPTIONS = {"alt_names": "altNames", "ip_sans": "ipSans", "uri_sans": "uriSans"}


def convert(obj: Mapping[str, Any], rec: Recorder, options: Options) -> dict[str, Any] | None:
    spec = obj.get("spec") or {}
    engine = spec.get("secretEngine") or "kv"
    if engine == "kv":
        return _kv(obj, spec, rec, options)
    if engine == "pki":
        return _pki(obj, spec, rec)
    # ricoberger's operator treats any other value as kv, and so does this conversion.
    rec.note("spec.secretEngine", f"{engine!r} is read as kv, as ricoberger's operator does")
    return _kv(obj, spec, rec, options)


def _common(spec: Mapping[str, Any], out: dict[str, Any], rec: Recorder) -> None:
    auth: dict[str, Any] = {}
    if spec.get("vaultRole"):
        auth["role"] = spec["vaultRole"]
    if spec.get("vaultNamespace"):
        auth["vaultNamespace"] = spec["vaultNamespace"]
    if auth:
        out["auth"] = auth
    if spec.get("type"):
        out["type"] = spec["type"]
    if spec.get("reconcileStrategy") == "Merge":
        out["target"] = {"creationPolicy": "Merge"}
    elif spec.get("reconcileStrategy") not in (None, "", "Replace"):
        rec.unmapped("spec.reconcileStrategy", f"{spec['reconcileStrategy']!r} is neither Replace nor Merge")


def _kv(
    obj: Mapping[str, Any], spec: Mapping[str, Any], rec: Recorder, options: Options
) -> dict[str, Any] | None:
    meta = obj.get("metadata") or {}
    result = new_object("VaultSecret", obj, str(meta.get("name")), meta.get("namespace"))
    out: dict[str, Any] = result["spec"]
    paths = [p for p in [spec.get("path"), *(spec.get("paths") or [])] if p]
    if not paths:
        rec.unmapped("spec.path", "no path")
        return None
    version = spec.get("version")
    sources = []
    for full in paths:
        mount, path = split_mount(str(full))
        kv = "v1" if mount in options.kv1_mounts else "v2"
        source: dict[str, Any] = {"mount": mount, "path": path, "kv": kv}
        if version and kv == "v2":
            source["version"] = version
        sources.append(source)
    if len(sources) == 1:
        out.update(sources[0])
    else:
        out["sources"] = sources
        rec.note(
            "spec.paths",
            "a key present at two paths is a KeyConflict in vaultsync; ricoberger's operator takes the first",
        )
    if not options.kv1_mounts:
        rec.note(
            "spec.path", "assumed KV v2 (ricoberger's operator detects it): pass --kv1-mount for KV v1 mounts"
        )
    if spec.get("keys"):
        out["keys"] = list(spec["keys"])
    _common(spec, out, rec)
    templates = spec.get("templates") or {}
    if templates:
        translated = _templates(templates, rec)
        if translated:
            out["templates"] = translated
            # ricoberger: with templates, only the templated keys are written.
            out["templatesOnly"] = True
            out.pop("keys", None)
    if spec.get("isBinary"):
        if spec.get("keys"):
            out["decodeBase64Keys"] = list(spec["keys"])
        else:
            rec.unmapped(
                "spec.isBinary",
                "vaultsync decodes the keys listed in spec.decodeBase64Keys: list the keys (spec.keys)",
            )
    return result


def _templates(templates: Mapping[str, Any], rec: Recorder) -> dict[str, str]:
    translated: dict[str, str] = {}
    for key, text in templates.items():
        try:
            translated[str(key)] = translate(str(text), secrets_map_resolver(), left="{%", right="%}")
        except TemplateNotTranslated as exc:
            rec.unmapped(f"spec.templates.{key}", f"{exc}: rewrite it in Jinja2")
    return translated


def _pki(obj: Mapping[str, Any], spec: Mapping[str, Any], rec: Recorder) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    result = new_object("VaultPKISecret", obj, str(meta.get("name")), meta.get("namespace"))
    out: dict[str, Any] = result["spec"]
    out["mount"] = str(spec.get("path") or "pki").strip("/")
    out["role"] = spec.get("role")
    for key, value in (spec.get("engineOptions") or {}).items():
        if key == "ttl":
            ttl = duration(value, "spec.engineOptions.ttl", rec)
            if ttl is not None:
                out["ttl"] = ttl
        elif key in _PKI_OPTIONS:
            out[_PKI_OPTIONS[key]] = value
        elif key in _PKI_LIST_OPTIONS:
            out[_PKI_LIST_OPTIONS[key]] = [v.strip() for v in str(value).split(",") if v.strip()]
        else:
            rec.unmapped(
                f"spec.engineOptions.{key}", "vaultsync asks for commonName, altNames, ipSans, uriSans, ttl"
            )
    _common(spec, out, rec)
    if out.get("type") != "kubernetes.io/tls":
        out.pop("type", None)
        rec.unmapped(
            "spec.type",
            f"{spec.get('type') or 'Opaque'}: ricoberger writes certificate, private_key, issuing_ca, ...; "
            "vaultsync writes a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt): update what reads it",
        )
    if spec.get("templates"):
        rec.unmapped(
            "spec.templates", "VaultPKISecret templates see other variables: rewrite them from docs/api.md"
        )
    return result
