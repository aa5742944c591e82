"""core/restarts.py: changes within VAULTSYNC_RESTART_COALESCE of each other restart a target once."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultsync.core.restarts import (
    DEFAULT_RESTART_COALESCE,
    RestartCoalescer,
    default_max_delay,
    plan_restarts,
)

change_times = st.lists(st.integers(min_value=0, max_value=10_000).map(float), max_size=40)
windows = st.integers(min_value=0, max_value=120).map(float)


def test_five_certificates_renewed_together_restart_once() -> None:
    assert plan_restarts([100.0, 100.5, 101.0, 103.0, 104.0]) == [114.0]


def test_changes_further_apart_than_the_window_restart_each_time() -> None:
    assert plan_restarts([0.0, 30.0, 60.0], window=10) == [10.0, 40.0, 70.0]


def test_a_target_changing_all_the_time_still_restarts_within_max_delay() -> None:
    changes = [float(t) for t in range(0, 200, 9)]  # every 9 s, window 10 s
    restarts = plan_restarts(changes, window=10)
    assert restarts[0] == default_max_delay(10)
    assert all(
        later - earlier <= default_max_delay(10) + 10 for earlier, later in itertools.pairwise(restarts)
    )


def test_window_zero_turns_coalescing_off() -> None:
    assert plan_restarts([5.0, 5.0, 6.0], window=0) == [5.0, 5.0, 6.0]


def test_no_change_no_restart() -> None:
    assert plan_restarts([]) == []


@pytest.mark.parametrize(("window", "max_delay"), [(-1.0, None), (float("inf"), None), (10.0, 5.0)])
def test_bad_settings_are_refused(window: float, max_delay: float | None) -> None:
    with pytest.raises(ValueError, match=r"VAULTSYNC_RESTART_COALESCE|at least the window"):
        plan_restarts([1.0], window, max_delay)


@given(changes=change_times, window=windows)
def test_every_change_is_covered_by_a_restart_within_max_delay(changes: list[float], window: float) -> None:
    restarts = plan_restarts(changes, window)
    max_delay = default_max_delay(window)
    for change in changes:
        assert any(change <= restart <= change + max_delay for restart in restarts)


@given(changes=change_times, window=windows)
def test_restarts_are_fewer_than_changes_and_at_least_a_window_apart(
    changes: list[float], window: float
) -> None:
    restarts = plan_restarts(changes, window)
    assert len(restarts) <= len(changes)
    assert all(later - earlier >= window for earlier, later in itertools.pairwise(restarts))


@given(changes=change_times, window=windows)
def test_changes_closer_than_the_window_with_no_restart_between_share_one(
    changes: list[float], window: float
) -> None:
    ordered = sorted(changes)
    restarts = plan_restarts(ordered, window)
    for earlier, later in itertools.pairwise(ordered):
        if later - earlier < window and not any(earlier <= r <= later for r in restarts):
            first_after = min(r for r in restarts if r >= later)
            assert first_after == min(r for r in restarts if r >= earlier)


@given(
    changes=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 500).map(float)), max_size=40),
    window=windows,
)
def test_the_incremental_coalescer_restarts_as_planned(
    changes: list[tuple[str, float]], window: float
) -> None:
    """Fed in time order, collecting due restarts before each change, as the engine's timer does."""
    coalescer: RestartCoalescer[str] = RestartCoalescer(window)
    fired: dict[str, list[float]] = {}

    def collect(now: float) -> None:
        while (due := coalescer.next_due()) is not None and due <= now:
            for target in coalescer.due(due):
                fired.setdefault(target, []).append(due)

    for target, at in sorted(changes, key=lambda c: c[1]):
        # A change at the very instant a restart is due lands after that restart.
        collect(at)
        coalescer.changed(target, at)
    collect(float("inf"))
    for target in "abc":
        assert fired.get(target, []) == plan_restarts([t for name, t in changes if name == target], window)


def test_due_returns_targets_earliest_first_and_forgets_them() -> None:
    coalescer: RestartCoalescer[tuple[str, str]] = RestartCoalescer(10)
    assert coalescer.changed(("ns", "b"), 5.0) == 15.0
    assert coalescer.changed(("ns", "a"), 0.0) == 10.0
    assert coalescer.changed(("ns", "a"), 3.0) == 13.0
    assert coalescer.next_due() == 13.0
    assert coalescer.due(12.9) == []
    assert coalescer.due(20.0) == [("ns", "a"), ("ns", "b")]
    assert coalescer.pending() == {}
    assert coalescer.next_due() is None


def test_forget_drops_a_pending_restart() -> None:
    coalescer: RestartCoalescer[str] = RestartCoalescer()
    coalescer.changed("web", 0.0)
    coalescer.forget("web")
    assert coalescer.due(DEFAULT_RESTART_COALESCE * 100) == []


def test_an_overdue_restart_not_yet_collected_covers_a_later_change() -> None:
    coalescer: RestartCoalescer[str] = RestartCoalescer(10)
    coalescer.changed("web", 0.0)
    assert coalescer.changed("web", 50.0) == 10.0
    assert coalescer.due(50.0) == ["web"]
