"""Durations as users write them: ``0``, ``30s``, ``5m``, ``1h30m``, ``1.5h``, ``500ms``, ``1d``.

The grammar is Go's ``time.ParseDuration`` restricted to non-negative values, plus ``d`` (24h):
one or more ``<number><unit>`` pairs, with units ``ms``, ``s``, ``m``, ``h`` and ``d``; a bare ``0``
means zero. Numbers may have a fraction (``1.5h``, ``.5s``). No spaces, no signs, no other units.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")
_HINT = "use e.g. 30s, 5m, 1h30m, 500ms or 0"


def parse_duration(text: str) -> float:
    """Parse a duration such as ``30s``, ``5m``, ``1h30m``, ``1.5h``, ``500ms`` or ``0`` into seconds.

    Raises :class:`ValueError` with a message that says what is wrong and what is accepted.
    Negative durations are rejected.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration: {_HINT}")
    s = text.strip()
    if not s:
        raise ValueError(f"an empty string is not a duration: {_HINT}")
    if s.startswith("-"):
        raise ValueError(f"{text!r} is negative; durations cannot be negative: {_HINT}")
    if s.startswith("+"):
        s = s[1:]
    if re.fullmatch(r"0+(?:\.0*)?", s):
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", s[pos:]):
                raise ValueError(f"{text!r} has a number without a unit: {_HINT} (units: ms, s, m, h, d)")
            raise ValueError(f"{text!r} is not a duration: {_HINT} (units: ms, s, m, h, d)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not math.isfinite(total):
        raise ValueError(f"{text!r} is too large to be a duration")
    return total


def format_duration(seconds: float) -> str:
    """Format seconds as a compact duration that :func:`parse_duration` reads back.

    Examples: ``0`` -> ``"0s"``, ``90`` -> ``"1m30s"``, ``5400`` -> ``"1h30m"``, ``0.5`` -> ``"500ms"``,
    ``1.25`` -> ``"1.25s"``. Precision is one millisecond; negative values get a leading ``-``
    (which :func:`parse_duration` rejects); non-finite values raise :class:`ValueError`.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"{seconds!r} is not a finite number of seconds")
    if seconds < 0:
        return "-" + format_duration(-seconds)
    total_ms = round(seconds * 1000)
    if total_ms == 0:
        return "0s"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs and millis:
        out += f"{secs}.{millis:03d}".rstrip("0") + "s"
    elif secs:
        out += f"{secs}s"
    elif millis:
        out += f"{millis}ms"
    return out
