"""Conditions whose lastTransitionTime moves only when their status does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from kubetee.api.conditions import Condition, ConditionStatus


@dataclass(frozen=True, slots=True)
class Observed:
    """A condition as just observed, before it is dated."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC, seconds precision, as Kubernetes writes times."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    previous: Sequence[Condition],
    observed: Iterable[Observed],
    generation: int,
    now: datetime,
) -> list[Condition]:
    """The new condition list: ``observed`` in order, dated from ``previous``.

    A condition keeps its lastTransitionTime while its status stays the same, even if
    reason or message change; a new status takes ``now``.
    """
    before = {condition.type: condition for condition in previous}
    merged = []
    for item in observed:
        old = before.get(item.type)
        since = (
            old.last_transition_time
            if old is not None and old.status == item.status
            else timestamp(now)
        )
        merged.append(
            Condition(
                type=item.type,
                status=item.status,
                reason=item.reason,
                message=item.message,
                observed_generation=generation,
                last_transition_time=since,
            )
        )
    return merged


def transitions(previous: Sequence[Condition], current: Sequence[Condition]) -> list[Condition]:
    """Conditions of ``current`` whose status or reason differs from ``previous``."""
    before = {(c.type, c.status, c.reason) for c in previous}
    return [c for c in current if (c.type, c.status, c.reason) not in before]
