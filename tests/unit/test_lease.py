"""core/lease.py: the status.lease record, when to renew, and what Vault's renewal answers mean."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultsync.core.lease import (
    DEFAULT_RENEWAL_PERCENT,
    JITTER_SHARE,
    Lease,
    LeaseError,
    RenewalOutcome,
    Step,
    format_time,
    has_lease,
    next_step,
    parse_time,
    renewal_failed,
    renewal_succeeded,
    renewal_time,
    safety_margin,
    stable_unit,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LEASE_ID = "database/creds/app/AbCdEf123"

moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
periods = st.integers(min_value=1, max_value=90 * 86400).map(lambda s: timedelta(seconds=s))
percents = st.integers(min_value=1, max_value=90)
units = st.floats(min_value=0.0, max_value=1.0)


def answer(duration: int = 30, renewable: bool = True, **extra: Any) -> dict[str, Any]:
    return {"lease_id": LEASE_ID, "lease_duration": duration, "renewable": renewable, **extra}


def issued(duration: int = 30, renewable: bool = True) -> Lease:
    return Lease.issued(answer(duration, renewable), T0)


# --- renewal_time ---------------------------------------------------------------------------------------


@given(start=moments, period=periods, percent=percents, unit=units)
def test_renewal_time_is_after_the_percent_point_and_before_the_end_minus_the_margin(
    start: datetime, period: timedelta, percent: int, unit: float
) -> None:
    end = start + period
    at = renewal_time(start, end, percent, unit)
    assert start + period * percent / 100 - timedelta(microseconds=1) <= at
    assert at <= end - safety_margin(period) + timedelta(microseconds=1)
    assert at - (start + period * percent / 100) <= period * JITTER_SHARE + timedelta(microseconds=1)


@given(start=moments, period=periods, percent=percents, low=units, high=units)
def test_more_jitter_never_means_earlier(
    start: datetime, period: timedelta, percent: int, low: float, high: float
) -> None:
    low, high = sorted((low, high))
    assert renewal_time(start, start + period, percent, low) <= renewal_time(
        start, start + period, percent, high
    )


def test_renewal_time_without_jitter_is_the_percent_point() -> None:
    assert renewal_time(T0, T0 + timedelta(seconds=100), 67, 0.0) == T0 + timedelta(seconds=67)


def test_renewal_time_at_90_percent_has_no_room_for_jitter() -> None:
    end = T0 + timedelta(seconds=100)
    assert renewal_time(T0, end, 90, 1.0) == T0 + timedelta(seconds=90)


def test_a_long_lease_keeps_a_margin_of_at_most_five_minutes() -> None:
    end = T0 + timedelta(days=30)
    at = renewal_time(T0, end, 90, 1.0)
    assert at == end - timedelta(minutes=5)


def test_an_empty_period_renews_at_once() -> None:
    assert renewal_time(T0, T0, 67, 0.5) == T0
    assert renewal_time(T0, T0 - timedelta(seconds=5), 67, 0.5) == T0


@pytest.mark.parametrize("percent", [0, 91, 100, -1])
def test_renewal_percent_outside_1_to_90_is_refused_naming_the_field(percent: int) -> None:
    with pytest.raises(ValueError, match="renewalPercent must be from 1 to 90"):
        renewal_time(T0, T0 + timedelta(seconds=10), percent)


def test_renewal_percent_must_be_an_integer() -> None:
    with pytest.raises(ValueError, match="renewalPercent must be an integer"):
        renewal_time(T0, T0 + timedelta(seconds=10), True)


@pytest.mark.parametrize("unit", [-0.1, 1.5, float("nan")])
def test_jitter_unit_outside_0_to_1_is_refused(unit: float) -> None:
    with pytest.raises(ValueError, match="jitter unit"):
        renewal_time(T0, T0 + timedelta(seconds=10), 67, unit)


@given(key=st.text(max_size=40))
def test_stable_unit_is_in_0_1_and_depends_only_on_the_key(key: str) -> None:
    unit = stable_unit(key)
    assert 0.0 <= unit < 1.0
    assert stable_unit(key) == unit


def test_stable_units_of_leases_issued_together_spread() -> None:
    units = [stable_unit(f"database/creds/app/{i}") for i in range(200)]
    assert min(units) < 0.1
    assert max(units) > 0.9


# --- the record -----------------------------------------------------------------------------------------


def test_issued_lease_from_vaults_answer() -> None:
    lease = Lease.issued(answer(30), T0 + timedelta(microseconds=900_000))
    assert lease.id == LEASE_ID
    assert lease.duration == 30
    assert lease.renewable is True
    # Rounded down to the second: status never says the credentials live longer than Vault holds them.
    assert lease.issued_at == T0
    assert lease.expires_at == T0 + timedelta(seconds=30)
    assert lease.last_renewal_time is None


def test_status_record_has_the_contract_fields() -> None:
    renewed = issued(30).renewed(30, T0 + timedelta(seconds=20))
    assert renewed.to_status() == {
        "id": LEASE_ID,
        "duration": 30,
        "renewable": True,
        "issuedAt": "2024-05-01T12:00:00Z",
        "expiresAt": "2024-05-01T12:00:50Z",
        "lastRenewalTime": "2024-05-01T12:00:20Z",
    }


def test_a_lease_never_renewed_has_no_last_renewal_time_in_status() -> None:
    assert "lastRenewalTime" not in issued().to_status()


@given(
    issued_at=moments,
    duration=st.integers(min_value=1, max_value=10**7),
    renewable=st.booleans(),
    renewed_after=st.none() | st.integers(min_value=0, max_value=10**6),
)
def test_status_round_trip(
    issued_at: datetime, duration: int, renewable: bool, renewed_after: int | None
) -> None:
    lease = Lease.issued(answer(duration, renewable), issued_at)
    if renewed_after is not None:
        lease = lease.renewed(duration, lease.issued_at + timedelta(seconds=renewed_after))
    assert Lease.from_status(lease.to_status()) == lease


def test_from_status_reads_other_rfc3339_spellings() -> None:
    status = issued().to_status() | {"issuedAt": "2024-05-01T14:00:00.5+02:00"}
    assert Lease.from_status(status).issued_at == T0 + timedelta(microseconds=500_000)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": ""}, "status.lease.id"),
        ({"duration": 0}, "status.lease.duration"),
        ({"duration": "30"}, "status.lease.duration"),
        ({"duration": True}, "status.lease.duration"),
        ({"renewable": "yes"}, "status.lease.renewable"),
        ({"issuedAt": "yesterday"}, "status.lease.issuedAt"),
        ({"expiresAt": "2024-05-01 12:00:30"}, "status.lease.expiresAt"),
        ({"expiresAt": "2024-05-01T12:00:30"}, "status.lease.expiresAt"),
        ({"expiresAt": 1714564830}, "status.lease.expiresAt"),
        ({"lastRenewalTime": "soon"}, "status.lease.lastRenewalTime"),
        ({"expiresAt": "2024-05-01T11:00:00Z"}, "status.lease.expiresAt"),
    ],
)
def test_from_status_names_the_broken_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(LeaseError, match=field.replace(".", r"\.")):
        Lease.from_status(issued().to_status() | change)


def test_from_status_refuses_a_non_object() -> None:
    with pytest.raises(LeaseError, match=r"status\.lease must be an object"):
        Lease.from_status(["id"])


def test_answers_without_a_lease_are_not_leases() -> None:
    assert has_lease(answer(30))
    assert not has_lease({"lease_id": "", "lease_duration": 0, "data": {}})
    assert not has_lease({"lease_id": "x", "lease_duration": 0})
    assert not has_lease({"data": {"username": "u"}})
    with pytest.raises(LeaseError, match="no lease_id"):
        Lease.issued({"lease_duration": 30}, T0)
    with pytest.raises(LeaseError, match="lease_duration"):
        Lease.issued({"lease_id": "x", "lease_duration": 0}, T0)


def test_format_time_refuses_naive_datetimes_and_converts_zones() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2024, 5, 1))
    plus_two = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(plus_two) == "2024-05-01T12:00:00Z"
    assert parse_time("2024-05-01t12:00:00z", "f") == T0


# --- next_step ------------------------------------------------------------------------------------------


def test_a_renewable_lease_is_renewed_at_its_renewal_time() -> None:
    lease = issued(100)
    step = next_step(lease, T0 + timedelta(seconds=1))
    assert step.step is Step.RENEW
    assert T0 + timedelta(seconds=67) <= step.at <= T0 + timedelta(seconds=77)
    assert step.at == renewal_time(T0, lease.expires_at, DEFAULT_RENEWAL_PERCENT, stable_unit(LEASE_ID))


def test_after_a_renewal_the_next_one_counts_from_the_renewal() -> None:
    renewed = issued(100).renewed(100, T0 + timedelta(seconds=70))
    step = next_step(renewed, T0 + timedelta(seconds=70))
    assert T0 + timedelta(seconds=70 + 67) <= step.at <= T0 + timedelta(seconds=70 + 77)


def test_a_lease_that_is_not_renewable_is_replaced_before_it_ends() -> None:
    step = next_step(issued(100, renewable=False), T0)
    assert step.step is Step.REISSUE
    assert T0 + timedelta(seconds=67) <= step.at < T0 + timedelta(seconds=100)


def test_a_restarted_operator_resumes_a_valid_lease_from_status() -> None:
    record = issued(100).to_status()
    step = next_step(Lease.from_status(record), T0 + timedelta(seconds=40))
    assert step.step is Step.RENEW


def test_a_lease_that_ended_while_the_operator_was_away_is_replaced_now() -> None:
    now = T0 + timedelta(seconds=31)
    step = next_step(issued(30), now)
    assert (step.step, step.at) == (Step.REISSUE, now)
    assert "ended at 2024-05-01T12:00:30Z" in step.why


# --- renewal answers ------------------------------------------------------------------------------------


def test_a_full_renewal_extends_the_lease() -> None:
    now = T0 + timedelta(seconds=20)
    result = renewal_succeeded(issued(30), answer(30), requested=30, now=now)
    assert result.outcome is RenewalOutcome.EXTENDED
    assert result.lease.expires_at == now + timedelta(seconds=30)
    assert result.lease.last_renewal_time == now
    assert result.next.step is Step.RENEW
    assert not result.needs_new_credentials


def test_a_renewal_one_second_short_is_rounding_not_max_ttl() -> None:
    result = renewal_succeeded(issued(30), answer(29), requested=30, now=T0 + timedelta(seconds=20))
    assert result.outcome is RenewalOutcome.EXTENDED


def test_a_renewal_capped_by_max_ttl_asks_for_new_credentials_before_the_end() -> None:
    now = T0 + timedelta(seconds=40)
    result = renewal_succeeded(issued(30), answer(20), requested=30, now=now)
    assert result.outcome is RenewalOutcome.SHORTENED
    assert result.needs_new_credentials
    assert result.lease.expires_at == now + timedelta(seconds=20)
    assert now + timedelta(seconds=20 * 0.67) <= result.next.at < result.lease.expires_at
    assert "max TTL" in result.message
    assert "20s instead of 30s" in result.message


def test_a_max_ttl_warning_alone_means_shortened() -> None:
    warning = 'TTL of "30s" exceeded the effective max_ttl of "29s"; TTL value is capped accordingly'
    result = renewal_succeeded(issued(30), answer(29, warnings=[warning]), 30, T0 + timedelta(seconds=20))
    assert result.outcome is RenewalOutcome.SHORTENED


@pytest.mark.parametrize("errors", [["lease not found"], ["invalid lease"], ["lease expired"]])
def test_a_lease_gone_from_vault_is_replaced_now(errors: list[str]) -> None:
    now = T0 + timedelta(seconds=20)
    result = renewal_failed(issued(30), 400, errors, now)
    assert result.outcome is RenewalOutcome.GONE
    assert (result.next.step, result.next.at) == (Step.REISSUE, now)


@pytest.mark.parametrize(
    ("status", "errors"), [(400, ["lease is not renewable"]), (403, ["permission denied"])]
)
def test_a_refused_renewal_is_replaced_now_and_says_how_long_the_old_credentials_live(
    status: int, errors: list[str]
) -> None:
    result = renewal_failed(issued(30), status, errors, T0 + timedelta(seconds=20))
    assert result.outcome is RenewalOutcome.REFUSED
    assert result.needs_new_credentials
    assert f"HTTP {status}" in result.message
    assert "end at 2024-05-01T12:00:30Z (in 10s)" in result.message


@pytest.mark.parametrize("status", [None, 429, 500, 503])
def test_vault_unavailable_retries_the_renewal_and_tells_the_remaining_time(status: int | None) -> None:
    now = T0 + timedelta(seconds=20)
    result = renewal_failed(issued(30), status, ["Vault is sealed"], now)
    assert result.outcome is RenewalOutcome.UNAVAILABLE
    assert result.next.step is Step.RENEW
    assert result.lease == issued(30)
    assert "(in 10s)" in result.message


def test_vault_unavailable_past_the_end_means_new_credentials() -> None:
    result = renewal_failed(issued(30), 503, [], T0 + timedelta(seconds=31))
    assert result.outcome is RenewalOutcome.UNAVAILABLE
    assert result.next.step is Step.REISSUE


def test_renewal_messages_do_not_repeat_vaults_error_text() -> None:
    result = renewal_failed(issued(30), 400, ["weird error with s3cr3t-looking text"], T0)
    assert "s3cr3t" not in result.message
