"""Logging: text for humans, JSON (one object per line) for machines.

Log records about a VaultSecret carry `namespace`, `name` and, for outcomes, `reason` as extra fields; the
JSON format emits them as keys. Nothing that logs here is given a secret value or a token.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from types import TracebackType

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
    def __init__(self, *, debug: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.debug = debug

    def formatException(self, ei: object) -> str:
        # An exception's message can quote a value (e.g. "invalid literal for int(): '...'"): operator logs
        # show only its type; at DEBUG also where it happened (file, line and function of each frame).
        exc_type = ei[0] if isinstance(ei, tuple) else None
        name = getattr(exc_type, "__name__", "error")
        tb = ei[2] if isinstance(ei, tuple) and len(ei) == 3 else None
        if not self.debug or not isinstance(tb, TracebackType):
            return f"  ({name}; run with VAULTSYNC_LOG_LEVEL=DEBUG for where it happened)"
        frames = "\n".join(
            f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}'
            for frame in traceback.extract_tb(tb)
        )
        return f"Traceback (most recent call last; the exception's message is not shown):\n{frames}\n{name}"


def configure(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else TextFormatter(debug=level.upper() == "DEBUG")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kopf narrates every event at INFO; its warnings and errors still show.
    for noisy in ("kopf", "aiohttp.access", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
