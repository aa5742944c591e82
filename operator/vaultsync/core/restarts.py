"""Coalescing of rollout restarts (``VAULTSYNC_RESTART_COALESCE``), as pure logic: no I/O, no clock.

A Deployment that mounts five certificates renewed together must restart once, not five times. A change
to a target's Secret data does not restart the target at once: the restart is due ``window`` seconds after
the change, and every further change that lands before it is due joins it (and moves it to ``window`` after
that change). So changes less than ``window`` apart make one restart, which happens ``window`` after the
last of them, but never later than ``max_delay`` after the first (a target whose Secrets change every few
seconds still restarts). A window of 0 turns coalescing off: each change restarts the target.

:func:`plan_restarts` gives the restart times of a list of change times; :class:`RestartCoalescer` does the
same incrementally for many targets (the engine calls ``changed`` as Secrets change and ``due`` when its
timer fires). Times are seconds on any monotonic clock.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["DEFAULT_RESTART_COALESCE", "RestartCoalescer", "default_max_delay", "plan_restarts"]

DEFAULT_RESTART_COALESCE = 10.0  # seconds
MAX_DELAY_WINDOWS = 6  # a burst of changes delays its restart by at most this many windows

K = TypeVar("K", bound=Hashable)


def default_max_delay(window: float) -> float:
    return window * MAX_DELAY_WINDOWS


def _check(window: float, max_delay: float | None) -> float:
    if not math.isfinite(window) or window < 0:
        raise ValueError(f"VAULTSYNC_RESTART_COALESCE must be a duration of 0 or more, not {window!r}")
    delay = default_max_delay(window) if max_delay is None else max_delay
    if not math.isfinite(delay) or delay < window:
        raise ValueError(f"the longest restart delay ({delay!r}s) must be at least the window ({window}s)")
    return delay


@dataclass
class _Burst:
    first: float
    last: float

    def due(self, window: float, max_delay: float) -> float:
        return min(self.last + window, self.first + max_delay)

    def joins(self, at: float, window: float, max_delay: float) -> bool:
        """A change at ``at`` joins this burst: it lands before the restart is due (a change at the very
        instant the restart is due lands after it)."""
        return at < self.due(window, max_delay)


def plan_restarts(
    changes: Iterable[float], window: float = DEFAULT_RESTART_COALESCE, max_delay: float | None = None
) -> list[float]:
    """The restart times of one target whose Secret data changed at the times ``changes``."""
    delay = _check(window, max_delay)
    restarts: list[float] = []
    burst: _Burst | None = None
    for at in sorted(changes):
        if burst is not None and burst.joins(at, window, delay):
            burst.last = at
            continue
        if burst is not None:
            restarts.append(burst.due(window, delay))
        burst = _Burst(at, at)
    if burst is not None:
        restarts.append(burst.due(window, delay))
    return restarts


class RestartCoalescer(Generic[K]):
    """Pending restarts of many targets (e.g. ``(namespace, kind, name)``).

    ``changed(target, now)`` records a change and returns when the target's restart is due;
    ``due(now)`` removes and returns the targets whose restart is due at ``now``, earliest first;
    ``next_due()`` is when the engine should call ``due`` again.
    """

    def __init__(self, window: float = DEFAULT_RESTART_COALESCE, max_delay: float | None = None) -> None:
        self.window = window
        self.max_delay = _check(window, max_delay)
        self._bursts: dict[K, _Burst] = {}

    def changed(self, target: K, now: float) -> float:
        burst = self._bursts.get(target)
        if burst is None:
            burst = _Burst(now, now)
            self._bursts[target] = burst
        elif burst.joins(now, self.window, self.max_delay):
            burst.last = max(burst.last, now)
        # else: the restart is overdue and not collected yet; it happens after this change, so it covers it.
        return burst.due(self.window, self.max_delay)

    def due(self, now: float) -> list[K]:
        ready = sorted(
            (burst.due(self.window, self.max_delay), index, target)
            for index, (target, burst) in enumerate(self._bursts.items())
            if burst.due(self.window, self.max_delay) <= now
        )
        for _, _, target in ready:
            del self._bursts[target]
        return [target for _, _, target in ready]

    def next_due(self) -> float | None:
        return min((b.due(self.window, self.max_delay) for b in self._bursts.values()), default=None)

    def pending(self) -> dict[K, float]:
        return {target: b.due(self.window, self.max_delay) for target, b in self._bursts.items()}

    def forget(self, target: K) -> None:
        """Drop a pending restart (the target or its owner was deleted)."""
        self._bursts.pop(target, None)
