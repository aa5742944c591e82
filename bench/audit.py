"""Counting from outside the operator: the kube-apiserver audit log and the OpenBao audit device.

The stack's API server logs one line per write (create, update, patch, delete) on Secrets and VaultSecrets
(and their status) at Metadata level, at the ResponseComplete stage (``AUDIT_POLICY`` in
``vaultsync/devstack/stack.py``). OpenBao's file audit device logs a ``request`` and a ``response`` entry per
request. Both logs are read from a byte offset taken before a phase, and only lines holding a given marker
(the run's id) are decoded, so the logs of a long test session cost little.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


def timestamp(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (fractions beyond microseconds are dropped)."""
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class AuditLog:
    """A JSON-lines log that grows while it is read: entries from an offset, only complete lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.next_offset = 0

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def entries(self, start: int, markers: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        """Decoded complete lines from byte ``start`` on that contain one of ``markers``; afterwards
        ``next_offset`` is where the next read should start (after the last complete line)."""
        self.next_offset = start
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
        cut = data.rfind(b"\n")
        if cut < 0:
            return
        self.next_offset = start + cut + 1
        encoded = tuple(marker.encode() for marker in markers)
        for line in data[: cut + 1].splitlines():
            if any(marker in line for marker in encoded):
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


@dataclass(frozen=True)
class KubeWrite:
    at: float  # stageTimestamp: when the API server answered
    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int


def kube_writes(log: AuditLog, start: int, namespaces: tuple[str, ...]) -> list[KubeWrite]:
    """Every write the API server logged in ``namespaces`` from byte ``start`` on."""
    writes = []
    for entry in log.entries(start, tuple(f'"namespace":"{ns}"' for ns in namespaces)):
        ref = entry.get("objectRef") or {}
        if entry.get("stage") != "ResponseComplete" or ref.get("namespace") not in namespaces:
            continue
        writes.append(
            KubeWrite(
                at=timestamp(entry["stageTimestamp"]),
                verb=entry.get("verb", ""),
                resource=ref.get("resource", ""),
                subresource=ref.get("subresource", ""),
                namespace=ref.get("namespace", ""),
                name=ref.get("name", ""),
                code=int((entry.get("responseStatus") or {}).get("code", 0)),
            )
        )
    return writes


@dataclass(frozen=True)
class VaultRequest:
    at: float
    operation: str
    path: str
    identity: str  # "<display name> (role <role>)" of the token used, or of the login's new token


def _identity(auth: dict[str, Any]) -> str:
    role = (auth.get("metadata") or {}).get("role", "")
    return f"{auth.get('display_name', '')} (role {role})"


def vault_reads(log: AuditLog, start: int, path_prefix: str) -> list[VaultRequest]:
    """Read requests (``request`` entries) on paths under ``path_prefix`` from byte ``start`` on."""
    reads = []
    for entry in log.entries(start, (path_prefix,)):
        request = entry.get("request") or {}
        if entry.get("type") != "request" or not str(request.get("path", "")).startswith(path_prefix):
            continue
        if request.get("operation") != "read":
            continue
        reads.append(
            VaultRequest(
                at=timestamp(entry["time"]),
                operation="read",
                path=request["path"],
                identity=_identity(entry.get("auth") or {}),
            )
        )
    return reads


def vault_logins(log: AuditLog, start: int, role: str) -> list[VaultRequest]:
    """Successful logins (``response`` entries of ``auth/*/login``) that obtained a token of ``role``."""
    logins = []
    for entry in log.entries(start, ("/login",)):
        request = entry.get("request") or {}
        auth = entry.get("auth") or {}
        if entry.get("type") != "response" or not str(request.get("path", "")).endswith("/login"):
            continue
        if (auth.get("metadata") or {}).get("role") != role or entry.get("error"):
            continue
        logins.append(
            VaultRequest(
                at=timestamp(entry["time"]),
                operation="login",
                path=request["path"],
                identity=_identity(auth),
            )
        )
    return logins
