"""Objects that hold tokens or values never show them in repr or logs."""

from __future__ import annotations

import json
import logging
import sys

from vaultsync.logs import JsonFormatter, TextFormatter
from vaultsync.vault.client import KVSecret, VaultToken


def test_token_and_kv_reprs_hide_values() -> None:
    token = VaultToken("hvs.SUPERSECRETTOKEN", "acc-1", 60, True, 0.0)
    kv = KVSecret({"password": "p4ssw0rd-VALUE"}, 3, None)
    assert "SUPERSECRETTOKEN" not in repr(token) and "acc-1" in repr(token)
    assert "p4ssw0rd-VALUE" not in repr(kv) and "password" in repr(kv)
    assert "p4ssw0rd-VALUE" not in repr([kv, token])


def _record_with_exception(message: str) -> logging.LogRecord:
    try:
        raise ValueError(message)
    except ValueError:
        return logging.LogRecord("vaultsync", logging.ERROR, __file__, 1, "sync failed", (), sys.exc_info())


def test_text_logs_omit_exception_messages_outside_debug() -> None:
    logging.getLogger().setLevel(logging.INFO)
    line = TextFormatter().format(_record_with_exception("value was s3cr3t-VALUE"))
    assert "s3cr3t-VALUE" not in line
    assert "ValueError" in line


def test_json_logs_carry_object_fields_and_no_exception_message() -> None:
    record = _record_with_exception("value was s3cr3t-VALUE")
    record.vs_namespace, record.vs_name, record.reason = "shop", "db", "Synced"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["namespace"] == "shop" and entry["name"] == "db" and entry["reason"] == "Synced"
    assert entry["error"] == "ValueError"
    assert "s3cr3t-VALUE" not in json.dumps(entry)
