"""Logging: text for humans, JSON (one object per line) for machines.

Log records about a VaultSecret carry `namespace`, `name` and, for outcomes, `reason` as extra fields; the
JSON format emits them as keys. Nothing that logs here is given a secret value or a token.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# LogRecord reserves `name`; records carry vs_namespace/vs_name, emitted as namespace/name.
EXTRA_FIELDS = {"vs_namespace": "namespace", "vs_name": "name", "reason": "reason"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attr, key in EXTRA_FIELDS.items():
            value = getattr(record, attr, None)
            if value is not None:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatException(self, ei: object) -> str:
        # Tracebacks can quote local values; keep only the exception type in operator logs.
        exc_type = ei[0] if isinstance(ei, tuple) else None
        return f"  ({getattr(exc_type, '__name__', 'error')}; run with VAULTSYNC_LOG_LEVEL=DEBUG for details)"


def configure(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kopf narrates every event at INFO; its warnings and errors still show.
    for noisy in ("kopf", "aiohttp.access", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
