"""lastTransitionTime moves only when a condition's status does."""

from __future__ import annotations

from datetime import UTC, datetime

from kubetee.controller.conditions import Observed, merge_conditions, transitions

T0 = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 10, 5, 0, tzinfo=UTC)


def test_new_condition_takes_now() -> None:
    (condition,) = merge_conditions([], [Observed("Ready", "False", "Waiting", "m")], 3, T0)
    assert condition.last_transition_time == "2026-01-01T10:00:00Z"
    assert condition.observed_generation == 3


def test_same_status_keeps_time_even_with_new_reason_and_message() -> None:
    before = merge_conditions([], [Observed("Ready", "False", "A", "one")], 1, T0)
    after = merge_conditions(before, [Observed("Ready", "False", "B", "two")], 2, T1)
    assert after[0].last_transition_time == "2026-01-01T10:00:00Z"
    assert (after[0].reason, after[0].message, after[0].observed_generation) == ("B", "two", 2)


def test_status_change_takes_now_and_is_a_transition() -> None:
    before = merge_conditions([], [Observed("Ready", "False", "A", "")], 1, T0)
    after = merge_conditions(before, [Observed("Ready", "True", "Done", "")], 1, T1)
    assert after[0].last_transition_time == "2026-01-01T10:05:00Z"
    assert [c.reason for c in transitions(before, after)] == ["Done"]
    assert transitions(after, after) == []
