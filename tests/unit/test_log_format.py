"""Text logs at DEBUG show where an unexpected error happened (frames), never the exception's message."""

from __future__ import annotations

import logging
import sys

from vaultsync.logs import TextFormatter


def _failing_sync(value: str) -> None:
    int(value)  # ValueError: invalid literal for int() with base 10: '<value>'


def _record() -> logging.LogRecord:
    try:
        _failing_sync("s3cr3t-VALUE")
    except ValueError:
        return logging.LogRecord("vaultsync", logging.ERROR, __file__, 1, "sync failed", (), sys.exc_info())
    raise AssertionError("unreachable")


def test_debug_text_logs_show_frames_but_not_the_message() -> None:
    line = TextFormatter(debug=True).format(_record())
    assert "s3cr3t-VALUE" not in line
    assert "_failing_sync" in line and "test_log_format.py" in line
    assert line.rstrip().endswith("ValueError")


def test_other_levels_show_the_type_only() -> None:
    line = TextFormatter().format(_record())
    assert "s3cr3t-VALUE" not in line and "_failing_sync" not in line
    assert "(ValueError; run with VAULTSYNC_LOG_LEVEL=DEBUG for where it happened)" in line
