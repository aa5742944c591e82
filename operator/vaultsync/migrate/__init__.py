"""``vaultsync convert``: manifests of the peer operators -> vaultsync objects. Pure functions.

Reads HashiCorp's Vault Secrets Operator (:mod:`.vso`), External Secrets with the Vault provider
(:mod:`.eso`) and ricoberger's vault-secrets-operator (:mod:`.ricoberger`). Objects that refer to each
other (a VaultStaticSecret to its VaultAuth, an ExternalSecret to its SecretStore) are resolved among the
inputs, so convert them together. Other objects (Deployments, ...) are passed through unchanged, so that a
converted file can replace the original. Everything that did not map one to one is a
:class:`~vaultsync.migrate.model.Finding`; docs/migration.md has the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vaultsync.core.errors import SyncError
from vaultsync.core.spec import parse_spec
from vaultsync.migrate import eso, ricoberger, vso
from vaultsync.migrate.model import (
    EXIT_OK,
    EXIT_UNMAPPED,
    EXIT_USAGE,
    Finding,
    Options,
    Recorder,
    Result,
    describe,
)

__all__ = ["EXIT_OK", "EXIT_UNMAPPED", "EXIT_USAGE", "Finding", "Options", "Result", "convert", "peer_of"]


def peer_of(obj: Mapping[str, Any]) -> str | None:
    """``vso``, ``eso``, ``ricoberger`` or None for an object of none of the peers."""
    group = str(obj.get("apiVersion", "")).split("/", 1)[0]
    kind = obj.get("kind")
    if group == vso.GROUP and kind in vso.KINDS:
        return "vso"
    if group == eso.GROUP and kind in eso.KINDS:
        return "eso"
    if group == ricoberger.GROUP and kind in ricoberger.KINDS:
        return "ricoberger"
    return None


def convert(documents: Iterable[Any], options: Options | None = None) -> Result:
    options = options or Options()
    objects = [d for d in documents if d is not None]
    result = Result()
    findings = result.findings
    peers = [o for o in objects if isinstance(o, Mapping) and peer_of(o)]
    auths = vso.index_auths(peers)
    stores = eso.index_stores(peers)
    # Namespaces whose objects use each connection: the converted VaultConnection must allow them.
    connections: dict[str, set[str]] = {}
    consumers: list[dict[str, Any]] = []
    passed: list[dict[str, Any]] = []
    deferred: list[Mapping[str, Any]] = []
    for obj in objects:
        if not isinstance(obj, Mapping) or not peer_of(obj):
            if isinstance(obj, Mapping):
                passed.append(dict(obj))
                findings.append(
                    Finding("note", describe(obj), "-", "not an object of a peer: passed through")
                )
            continue
        rec = Recorder(obj, findings)
        try:
            converted = _convert_one(obj, rec, auths, stores, options, connections, deferred)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            # A manifest the peer's own API server would have refused (a string where an object goes, ...).
            _malformed(rec, exc)
            continue
        if converted is not None:
            _check(converted, rec)
            consumers.append(converted)
    produced: set[str] = set()
    for obj in deferred:
        rec = Recorder(obj, findings)
        try:
            name, connection = _convert_connection(obj, rec, stores, options, connections)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            _malformed(rec, exc)
            continue
        if connection is None:
            continue
        if options.no_connections:
            rec.note("-", "no VaultConnection written (--no-connections): the operator's settings serve it")
        else:
            produced.add(name)
            result.objects.append(connection)
    for name in sorted(set(connections) - produced):
        findings.append(
            Finding(
                "unmapped",
                f"VaultConnection {name}",
                "-",
                "referenced by converted objects but not among the inputs: convert it too, "
                "or pass --no-connections",
            )
        )
    result.objects.extend(consumers)
    result.objects.extend(passed)
    return result


def _convert_one(
    obj: Mapping[str, Any],
    rec: Recorder,
    auths: Mapping[tuple[str, str], vso.Auth],
    stores: Mapping[tuple[str, str, str], eso.Store],
    options: Options,
    connections: dict[str, set[str]],
    deferred: list[Mapping[str, Any]],
) -> dict[str, Any] | None:
    """The converted consumer object; connection-like objects are deferred (they need every consumer)."""
    kind = obj.get("kind")
    peer = peer_of(obj)
    if peer == "vso":
        if kind == "VaultStaticSecret":
            return vso.convert_static(obj, rec, auths, options, connections)
        if kind == "VaultDynamicSecret":
            return vso.convert_dynamic(obj, rec, auths, options, connections)
        if kind == "VaultPKISecret":
            return vso.convert_pki(obj, rec, auths, options, connections)
        if kind == "VaultAuth":
            for field_name, why in auths[_key(obj)].problems:
                rec.unmapped(field_name, why)
            rec.note("-", "no object of its own: its login is written into the objects that use it")
            return None
        deferred.append(obj)
        return None
    if peer == "eso":
        if kind == "ExternalSecret":
            return eso.convert_external_secret(obj, rec, stores, options, connections)
        if kind == "ClusterExternalSecret":
            return eso.convert_cluster_external_secret(obj, rec, stores, options, connections)
        deferred.append(obj)
        return None
    return ricoberger.convert(obj, rec, options)


def _convert_connection(
    obj: Mapping[str, Any],
    rec: Recorder,
    stores: Mapping[tuple[str, str, str], eso.Store],
    options: Options,
    connections: dict[str, set[str]],
) -> tuple[str, dict[str, Any] | None]:
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name"))
    if obj.get("kind") == "VaultConnection":
        ours = vso.connection_name(namespace or None, name)
        return ours, vso.convert_connection(obj, rec, connections.get(ours, set()))
    kind = str(obj.get("kind"))
    ours = eso.connection_name(kind, namespace, name)
    connection = eso.convert_store(obj, rec, connections.get(ours, set()))
    store = stores.get(eso.store_key(kind, namespace, name))
    for field_name, why in store.problems if store else ():
        rec.unmapped(field_name, why)
    return ours, connection


def _malformed(rec: Recorder, exc: Exception) -> None:
    rec.unmapped(
        "-",
        f"malformed object, not converted ({type(exc).__name__}): check it against the peer's CRD",
    )


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name"))


def _check(converted: Mapping[str, Any], rec: Recorder) -> None:
    """Our own parser's verdict on a converted VaultSecret (the kinds not implemented yet have none)."""
    if converted.get("kind") != "VaultSecret":
        return
    try:
        parse_spec(converted["spec"], name=str(converted["metadata"]["name"]), default_mount="secret")
    except SyncError as exc:
        rec.unmapped("spec", f"the converted VaultSecret would be refused: {exc.message}")
