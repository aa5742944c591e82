"""parse_duration / format_duration."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultsync.core.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("0.0", 0.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("2h45m10s", 9910.0),
        (".5s", 0.5),
        ("1d", 86400.0),
        ("  5m ", 300.0),
        ("+5m", 300.0),
        ("1h1h", 7200.0),
    ],
)
def test_parse_valid(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("5 minutes", "not a duration"),
        ("30", "without a unit"),
        ("1.5", "without a unit"),
        ("-5m", "negative"),
        ("5M", "not a duration"),
        ("1h 30m", "not a duration"),
        ("abc", "not a duration"),
        ("inf", "not a duration"),
        ("nan", "not a duration"),
        ("1e3s", "not a duration"),
        ("5m30", "without a unit"),
        ("s", "not a duration"),
    ],
)
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        parse_duration(text)
    assert "30s" in str(info.value)  # says what is accepted


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(5)  # type: ignore[arg-type]


def test_parse_too_large() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("9" * 400 + "h")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0001, "0s"),
        (0.5, "500ms"),
        (1, "1s"),
        (1.25, "1.25s"),
        (30, "30s"),
        (90, "1m30s"),
        (300, "5m"),
        (3600, "1h"),
        (5400, "1h30m"),
        (3600.5, "1h500ms"),
        (3661.25, "1h1m1.25s"),
        (90000, "25h"),
        (-90, "-1m30s"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_format_rejects_non_finite(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        format_duration(value)


@given(st.integers(min_value=0, max_value=10**10))
def test_round_trip_milliseconds(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-6)


@given(st.text(max_size=20))
def test_parse_only_raises_value_error(text: str) -> None:
    try:
        result = parse_duration(text)
    except ValueError:
        return
    assert result >= 0 and math.isfinite(result)
