"""Leases of dynamic credentials (VaultDynamicSecret), as pure logic: no I/O, no clock of its own.

* :class:`Lease` is the record kept in ``status.lease`` (``id``, ``duration``, ``renewable``, ``issuedAt``,
  ``expiresAt``, ``lastRenewalTime``), with :meth:`Lease.to_status` / :meth:`Lease.from_status`, so that a
  restarted operator resumes renewing from status instead of issuing new credentials.
* :func:`renewal_time` says when to act on something that ends: ``renewalPercent`` of its period, plus a
  jitter that spreads objects issued together, never later than the end minus a safety margin.
  :func:`next_step` applies it to a lease: renew it, or (not renewable, or already over) issue new
  credentials.
* :func:`renewal_succeeded` and :func:`renewal_failed` say what Vault's answer to ``sys/leases/renew``
  means: extended, shortened (max TTL reached: new credentials are needed before the end), refused, gone,
  or Vault unavailable (retry, and the message tells how long the credentials still live).

Times are timezone-aware datetimes (UTC); status holds them as RFC 3339 with second precision, and
``expiresAt`` is rounded down, so what status says is never later than what Vault holds.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vaultsync.core.duration import format_duration

__all__ = [
    "DEFAULT_RENEWAL_PERCENT",
    "Lease",
    "LeaseError",
    "NextStep",
    "RenewalOutcome",
    "RenewalResult",
    "Step",
    "format_time",
    "has_lease",
    "next_step",
    "parse_time",
    "renewal_failed",
    "renewal_succeeded",
    "renewal_time",
    "safety_margin",
    "stable_unit",
]

DEFAULT_RENEWAL_PERCENT = 67
MIN_RENEWAL_PERCENT = 1
MAX_RENEWAL_PERCENT = 90
# Renewals of objects issued together spread over up to this share of the period after the percent point.
JITTER_SHARE = 0.1
# Acting never later than the end minus this share of the period (at most MAX_SAFETY_MARGIN): with
# renewalPercent <= 90 the percent point itself always lies before that.
SAFETY_MARGIN_SHARE = 0.1
MAX_SAFETY_MARGIN = timedelta(minutes=5)
# Vault counts a renewal's TTL from its own clock: a granted duration this much below the one asked for
# is rounding, not max TTL.
SHORTENED_TOLERANCE_SECONDS = 2
STATUS_FIELD = "status.lease"


class LeaseError(ValueError):
    """A Vault answer or a ``status.lease`` record that cannot be a lease; the message names the field."""


# --- times ----------------------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision (``2024-05-01T12:00:00Z``), as Kubernetes writes times."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no time zone: pass an aware one (UTC)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any, field: str) -> datetime:
    """An RFC 3339 time with a zone (``Z`` or ``+hh:mm``; fractions allowed) as an aware UTC datetime."""
    if not isinstance(text, str) or "T" not in text.upper():
        raise LeaseError(f"{field}: {text!r} is not an RFC 3339 time (e.g. 2024-05-01T12:00:00Z)")
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise LeaseError(f"{field}: {text!r} is not an RFC 3339 time (e.g. 2024-05-01T12:00:00Z)") from exc
    if moment.tzinfo is None:
        raise LeaseError(f"{field}: {text!r} has no time zone; RFC 3339 needs one (Z or +hh:mm)")
    return moment.astimezone(UTC)


def _whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


# --- when to act ----------------------------------------------------------------------------------------


def safety_margin(period: timedelta) -> timedelta:
    """How long before the end of ``period`` renewal (or replacement) must have happened at the latest."""
    return min(period * SAFETY_MARGIN_SHARE, MAX_SAFETY_MARGIN)


def check_percent(percent: int) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int):
        raise ValueError(f"renewalPercent must be an integer from 1 to 90, not {percent!r}")
    if not MIN_RENEWAL_PERCENT <= percent <= MAX_RENEWAL_PERCENT:
        raise ValueError(
            f"renewalPercent must be from {MIN_RENEWAL_PERCENT} to {MAX_RENEWAL_PERCENT}, not {percent}: "
            "above 90 there is no time left to replace credentials before they end"
        )
    return percent


def renewal_time(
    start: datetime, end: datetime, percent: int = DEFAULT_RENEWAL_PERCENT, unit: float = 0.0
) -> datetime:
    """When to renew (or replace) something valid from ``start`` to ``end``.

    ``percent`` of the period, plus ``unit`` (in [0, 1], e.g. :func:`stable_unit` of the lease id) times
    the jitter: up to :data:`JITTER_SHARE` of the period, cut so that the result is never later than
    ``end - safety_margin(period)``. A period that is already empty gives ``start``.
    """
    check_percent(percent)
    if not (0.0 <= unit <= 1.0) or math.isnan(unit):
        raise ValueError(f"the jitter unit must be in [0, 1], not {unit!r}")
    period = end - start
    if period <= timedelta(0):
        return start
    base = period * percent / 100
    latest = period - safety_margin(period)
    jitter = max(timedelta(0), min(period * JITTER_SHARE, latest - base))
    return start + min(base, latest) + jitter * unit


def stable_unit(key: str) -> float:
    """A number in [0, 1) that depends only on ``key``: the jitter of a lease stays the same across
    restarts of the operator, while leases issued together still spread."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --- the lease record -----------------------------------------------------------------------------------


def has_lease(answer: Mapping[str, Any]) -> bool:
    """Whether a Vault answer comes with a lease (dynamic credentials); without one (e.g. a database
    static role) the answer is simply read again at ``refreshInterval``."""
    return bool(answer.get("lease_id")) and _int_or_zero(answer.get("lease_duration")) > 0


def _int_or_zero(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    return 0


@dataclass(frozen=True)
class Lease:
    """``status.lease``. ``duration`` (seconds) is the current period: from ``lastRenewalTime`` (or
    ``issuedAt``) to ``expiresAt``."""

    id: str
    duration: int
    renewable: bool
    issued_at: datetime
    expires_at: datetime
    last_renewal_time: datetime | None = None

    @property
    def period_start(self) -> datetime:
        return self.last_renewal_time or self.issued_at

    def remaining(self, now: datetime) -> timedelta:
        return max(timedelta(0), self.expires_at - now)

    def valid_at(self, now: datetime) -> bool:
        return now < self.expires_at

    @classmethod
    def issued(cls, answer: Mapping[str, Any], now: datetime) -> Lease:
        """The lease of a fresh answer (``lease_id``, ``lease_duration``, ``renewable``) received at
        ``now``."""
        lease_id = answer.get("lease_id")
        if not isinstance(lease_id, str) or not lease_id:
            raise LeaseError("Vault's answer has no lease_id: it is not a lease (read it at refreshInterval)")
        duration = _answer_duration(answer)
        issued_at = _whole_seconds(now)
        return cls(
            id=lease_id,
            duration=duration,
            renewable=answer.get("renewable") is True,
            issued_at=issued_at,
            expires_at=issued_at + timedelta(seconds=duration),
        )

    def renewed(self, duration: int, now: datetime) -> Lease:
        """This lease after a renewal at ``now`` granted ``duration`` seconds."""
        renewed_at = _whole_seconds(now)
        return Lease(
            id=self.id,
            duration=duration,
            renewable=self.renewable,
            issued_at=self.issued_at,
            expires_at=renewed_at + timedelta(seconds=duration),
            last_renewal_time=renewed_at,
        )

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "id": self.id,
            "duration": self.duration,
            "renewable": self.renewable,
            "issuedAt": format_time(self.issued_at),
            "expiresAt": format_time(self.expires_at),
        }
        if self.last_renewal_time is not None:
            status["lastRenewalTime"] = format_time(self.last_renewal_time)
        return status

    @classmethod
    def from_status(cls, status: Any) -> Lease:
        """Read ``status.lease`` back; a record that someone edited into nonsense raises
        :class:`LeaseError` naming the field (the caller then issues new credentials)."""
        if not isinstance(status, Mapping):
            raise LeaseError(f"{STATUS_FIELD} must be an object, not {type(status).__name__}")
        lease_id = status.get("id")
        if not isinstance(lease_id, str) or not lease_id:
            raise LeaseError(f"{STATUS_FIELD}.id must be a non-empty string")
        duration = status.get("duration")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
            raise LeaseError(
                f"{STATUS_FIELD}.duration must be a positive number of seconds, not {duration!r}"
            )
        renewable = status.get("renewable")
        if not isinstance(renewable, bool):
            raise LeaseError(f"{STATUS_FIELD}.renewable must be true or false, not {renewable!r}")
        issued_at = parse_time(status.get("issuedAt"), f"{STATUS_FIELD}.issuedAt")
        expires_at = parse_time(status.get("expiresAt"), f"{STATUS_FIELD}.expiresAt")
        last = status.get("lastRenewalTime")
        last_renewal = None if last is None else parse_time(last, f"{STATUS_FIELD}.lastRenewalTime")
        if expires_at < (last_renewal or issued_at):
            raise LeaseError(f"{STATUS_FIELD}.expiresAt is before the lease was issued or last renewed")
        return cls(lease_id, duration, renewable, issued_at, expires_at, last_renewal)


def _answer_duration(answer: Mapping[str, Any]) -> int:
    duration = answer.get("lease_duration")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
        raise LeaseError(
            f"Vault's answer has no usable lease_duration ({duration!r} is not a positive integer)"
        )
    return duration


# --- what to do next ------------------------------------------------------------------------------------


class Step(enum.Enum):
    RENEW = "renew"
    REISSUE = "reissue"


@dataclass(frozen=True)
class NextStep:
    step: Step
    at: datetime
    why: str


def next_step(lease: Lease, now: datetime, percent: int = DEFAULT_RENEWAL_PERCENT) -> NextStep:
    """What to do with a lease, and when: renew it at its renewal time; issue new credentials at that
    time if it is not renewable; issue them now if it is over (e.g. the operator was away too long)."""
    if not lease.valid_at(now):
        return NextStep(Step.REISSUE, now, f"the lease ended at {format_time(lease.expires_at)}")
    at = renewal_time(lease.period_start, lease.expires_at, percent, stable_unit(lease.id))
    if lease.renewable:
        return NextStep(Step.RENEW, at, f"{percent}% of the lease's {lease.duration}s")
    return NextStep(Step.REISSUE, at, "the lease is not renewable: new credentials before it ends")


# --- renewal answers ------------------------------------------------------------------------------------


class RenewalOutcome(enum.Enum):
    EXTENDED = "extended"  # renewed for what was asked: keep renewing
    SHORTENED = "shortened"  # capped by max TTL: new credentials before the new (near) end
    REFUSED = "refused"  # denied (not renewable, permission): the credentials live until expiresAt
    GONE = "gone"  # revoked or expired in Vault: the credentials no longer work
    UNAVAILABLE = "unavailable"  # sealed, unreachable, 5xx, 429: retry; the lease still runs out


@dataclass(frozen=True)
class RenewalResult:
    outcome: RenewalOutcome
    lease: Lease  # renewed for EXTENDED/SHORTENED, the old one otherwise
    next: NextStep
    message: str  # for status and Events: never a credential

    @property
    def needs_new_credentials(self) -> bool:
        return self.next.step is Step.REISSUE


def renewal_succeeded(
    lease: Lease,
    answer: Mapping[str, Any],
    requested: int,
    now: datetime,
    percent: int = DEFAULT_RENEWAL_PERCENT,
) -> RenewalResult:
    """Vault answered ``sys/leases/renew`` (asked for ``requested`` seconds) with ``answer``."""
    granted = _answer_duration(answer)
    renewed = lease.renewed(granted, now)
    warnings = answer.get("warnings") or []
    capped = any("max_ttl" in str(w) or "max TTL" in str(w) for w in warnings)
    if capped or granted < requested - SHORTENED_TOLERANCE_SECONDS:
        at = renewal_time(renewed.period_start, renewed.expires_at, percent, stable_unit(lease.id))
        return RenewalResult(
            RenewalOutcome.SHORTENED,
            renewed,
            NextStep(Step.REISSUE, at, "the lease reached its max TTL"),
            f"Vault renewed the lease for {granted}s instead of {requested}s (its max TTL is reached); new "
            f"credentials will be issued before it ends at {format_time(renewed.expires_at)}",
        )
    return RenewalResult(
        RenewalOutcome.EXTENDED,
        renewed,
        next_step(renewed, now, percent),
        f"lease renewed for {granted}s, until {format_time(renewed.expires_at)}",
    )


GONE_MARKERS = ("not found", "lease expired", "invalid lease", "revoked")


def renewal_failed(
    lease: Lease, status_code: int | None, errors: Sequence[str], now: datetime
) -> RenewalResult:
    """Vault refused ``sys/leases/renew`` with HTTP ``status_code`` and ``errors`` (Vault's ``errors``
    list), or could not be reached (``status_code=None``)."""
    left = lease.remaining(now)
    left_text = f"the current credentials end at {format_time(lease.expires_at)} (in {_seconds_text(left)})"
    if status_code is None or status_code == 429 or status_code >= 500:
        what = "Vault could not be reached" if status_code is None else f"Vault answered {status_code}"
        step = (
            NextStep(Step.RENEW, now, "retry the renewal")
            if lease.valid_at(now)
            else NextStep(Step.REISSUE, now, "the lease ended while Vault was unavailable")
        )
        return RenewalResult(
            RenewalOutcome.UNAVAILABLE, lease, step, f"renewing the lease failed: {what}; {left_text}"
        )
    text = "; ".join(errors).lower()
    if any(marker in text for marker in GONE_MARKERS) or not lease.valid_at(now):
        return RenewalResult(
            RenewalOutcome.GONE,
            lease,
            NextStep(Step.REISSUE, now, "the lease is gone"),
            "the lease no longer exists in Vault (revoked or expired): issuing new credentials",
        )
    return RenewalResult(
        RenewalOutcome.REFUSED,
        lease,
        NextStep(Step.REISSUE, now, "the renewal was refused"),
        f"Vault refused to renew the lease (HTTP {status_code}); issuing new credentials; {left_text}",
    )


def _seconds_text(delta: timedelta) -> str:
    return format_duration(float(int(delta.total_seconds())))
