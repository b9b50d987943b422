"""Replacing replicas that no longer pass attestation without taking the workload down.

A replica is replaced through the Eviction API, never deleted: the apiserver then
holds every PodDisruptionBudget over the replicas and answers 429 while an eviction
would break one (wait and try again at the next sweep). On top of that the operator
never has more replicas unavailable than the Deployment's own rolling-update budget
(``maxUnavailable``), counting the replicas already unavailable for any reason, so
replacements go one budget's worth at a time: the next waits until the replacement
of the last is Ready. And while the attestation service cannot be reached nothing is
replaced at all: a fresh replica could not attest either, and a re-attestation that
never came because the service is down is not the replica's fault.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from kubetee.controller.service_health import ServiceHealth
from kubetee.controller.views import PodView

_PERCENT = re.compile(r"^(\d+)%$")


def resolve_max_unavailable(value: int | str, desired: int) -> int:
    """The Deployment controller's reading of ``maxUnavailable`` for ``desired`` replicas.

    A percentage rounds down, as the Deployment controller rounds it; an unreadable
    value counts as 0 (replace nothing rather than guess).
    """
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    match = _PERCENT.match(value.strip())
    if match is None:
        return 0
    return math.floor(desired * int(match.group(1)) / 100)


def available(pod: PodView) -> bool:
    """Serving: Ready with its attestation gate holding, and not on its way out."""
    return pod.ready and pod.attested and not pod.terminating and not pod.terminated


def unavailable_replicas(pods: Iterable[PodView], desired: int) -> int:
    """Desired replicas not serving now: missing, starting, unattested or terminating."""
    return max(desired - sum(1 for pod in pods if available(pod)), 0)


@dataclass(frozen=True, slots=True)
class ReplacementPlan:
    """Which of the replicas to replace to evict now, and why the rest wait."""

    evict: tuple[str, ...]
    waiting: tuple[str, ...]
    why_waiting: str = ""


def plan_replacements(
    candidates: Sequence[str],
    *,
    desired: int,
    max_unavailable: int | str,
    pods: Iterable[PodView],
    service: ServiceHealth,
) -> ReplacementPlan:
    """Evict at most as many ``candidates`` (pod names) as the budget has room for.

    A candidate that is itself unavailable already counts against the budget, so it
    is evicted first: replacing it costs nothing more.
    """
    if not candidates:
        return ReplacementPlan((), ())
    if not service.reachable:
        return ReplacementPlan((), tuple(candidates), service.message)
    live = list(pods)
    budget = resolve_max_unavailable(max_unavailable, desired)
    unavailable = unavailable_replicas(live, desired)
    serving = {pod.name for pod in live if available(pod)}
    # Replacing an unavailable replica makes nothing less available.
    free = [name for name in candidates if name not in serving]
    room = max(budget - unavailable, 0)
    evict = free + [name for name in candidates if name in serving][:room]
    waiting = tuple(name for name in candidates if name not in evict)
    why = (
        f"{unavailable} of {desired} replicas are unavailable and the Deployment allows "
        f"{budget} (maxUnavailable {max_unavailable}); the next replacement waits for "
        "a replica to become Ready"
        if waiting
        else ""
    )
    return ReplacementPlan(tuple(evict), waiting, why)


class EvictionOutcome(Enum):
    """What an eviction request's answer means for the replacement."""

    EVICTED = "evicted"
    RETRY_LATER = "retry-later"  # 429: a PodDisruptionBudget does not allow it now
    GONE = "gone"  # 404: the pod is already gone; nothing to do
    FAILED = "failed"


def eviction_outcome(status: int | None) -> EvictionOutcome:
    """The outcome of an eviction answered with HTTP ``status`` (None: created)."""
    if status is None or 200 <= status < 300:
        return EvictionOutcome.EVICTED
    if status == 429:
        return EvictionOutcome.RETRY_LATER
    if status == 404:
        return EvictionOutcome.GONE
    return EvictionOutcome.FAILED
