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
        kind = obj.get("kind")
        converted: dict[str, Any] | None = None
        if peer_of(obj) == "vso":
            if kind == "VaultStaticSecret":
                converted = vso.convert_static(obj, rec, auths, options, connections)
            elif kind == "VaultDynamicSecret":
                converted = vso.convert_dynamic(obj, rec, auths, options, connections)
            elif kind == "VaultPKISecret":
                converted = vso.convert_pki(obj, rec, auths, options, connections)
            elif kind == "VaultAuth":
                for field_name, why in auths[_key(obj)].problems:
                    rec.unmapped(field_name, why)
                rec.note("-", "no object of its own: its login is written into the objects that use it")
            else:
                deferred.append(obj)
        elif peer_of(obj) == "eso":
            if kind == "ExternalSecret":
                converted = eso.convert_external_secret(obj, rec, stores, options, connections)
            elif kind == "ClusterExternalSecret":
                converted = eso.convert_cluster_external_secret(obj, rec, stores, options, connections)
            else:
                deferred.append(obj)
        else:
            converted = ricoberger.convert(obj, rec, options)
        if converted is not None:
            _check(converted, rec)
            consumers.append(converted)
    produced: set[str] = set()
    for obj in deferred:
        rec = Recorder(obj, findings)
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "VaultConnection":
            name = vso.connection_name(meta.get("namespace"), str(meta.get("name")))
            connection: dict[str, Any] | None = vso.convert_connection(obj, rec, connections.get(name, set()))
        else:
            name = eso.connection_name(
                str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name"))
            )
            connection = eso.convert_store(obj, rec, connections.get(name, set()))
            store = stores.get(
                eso.store_key(str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))
            )
            for field_name, why in store.problems if store else ():
                rec.unmapped(field_name, why)
            if options.no_connections:
                if connection is not None:
                    rec.note(
                        "-", "no VaultConnection written (--no-connections): the operator's settings serve it"
                    )
                continue
        if connection is not None and not options.no_connections:
            produced.add(name)
            result.objects.append(connection)
        elif connection is not None:
            rec.note("-", "no VaultConnection written (--no-connections): the operator's settings serve it")
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
