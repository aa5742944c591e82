"""OpenBao's audit log (JSON lines, one `request` and one `response` entry per request) as test evidence.

Counting from Vault's own record, not from the operator's counters, is what proves how often the operator
logged in or read a path. ``mark()`` remembers where the log ends, so that only later requests are counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vaultsync.devstack.vault_admin import VaultAdmin

AUDIT_DEVICE = "file"  # the stack's audit device (LocalStack._vault_config)


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """The current end of the log: pass it as ``since`` to look only at what comes later."""
        return self.path.stat().st_size if self.path.exists() else 0

    def entries(self, since: int = 0, kind: str = "request") -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as log:
            log.seek(since)
            for line in log:
                if not line.endswith(b"\n"):
                    return  # being written
                entry = json.loads(line)
                if entry.get("type") == kind:
                    yield entry

    def requests(
        self, path: str, since: int = 0, kind: str = "request", operation: str | None = None
    ) -> list[dict[str, Any]]:
        """Entries of requests to exactly this Vault API path (without /v1/), optionally of one operation
        (`read`, `update`, ...)."""
        return [
            e
            for e in self.entries(since, kind)
            if e.get("request", {}).get("path") == path
            and (operation is None or e["request"].get("operation") == operation)
        ]

    def count(self, path: str, since: int = 0) -> int:
        return len(self.requests(path, since))

    def paths(self, since: int = 0) -> list[str]:
        return [str(e.get("request", {}).get("path")) for e in self.entries(since)]


def audit_hash(vault_admin: VaultAdmin, text: str) -> str:
    """How the audit log shows ``text`` (HMAC-SHA256 with the audit device's salt; sys/audit-hash)."""
    response = vault_admin.client.adapter.post(f"/v1/sys/audit-hash/{AUDIT_DEVICE}", json={"input": text})
    return str(response["data"]["hash"])
