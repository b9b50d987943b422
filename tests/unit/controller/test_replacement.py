"""Replacing replicas: never beyond maxUnavailable, 429 means later, no service means none."""

from __future__ import annotations

from typing import Any

import pytest

from kubetee.controller.replacement import (
    EvictionOutcome,
    eviction_outcome,
    plan_replacements,
    resolve_max_unavailable,
    unavailable_replicas,
)
from kubetee.controller.service_health import REACHABLE, not_configured, unreachable
from kubetee.controller.views import PodView, pod_view
from tests.unit.controller.builders import pod


def _serving(*names: str) -> list[PodView]:
    return [pod_view(pod(name, node_name="n1", ready=True, attested=True)) for name in names]


def _plan(candidates: list[str], pods: list[PodView], desired: int = 3, **kw: Any) -> Any:
    kw.setdefault("max_unavailable", 1)
    kw.setdefault("service", REACHABLE)
    return plan_replacements(candidates, desired=desired, pods=pods, **kw)


@pytest.mark.parametrize(
    ("value", "desired", "expected"),
    [(1, 3, 1), (0, 3, 0), (2, 1, 2), ("25%", 3, 0), ("25%", 8, 2), ("50%", 5, 2), ("x", 4, 0)],
)
def test_max_unavailable_reads_as_the_deployment_controller_does(
    value: int | str, desired: int, expected: int
) -> None:
    assert resolve_max_unavailable(value, desired) == expected


def test_all_serving_replicas_are_replaced_one_at_a_time() -> None:
    pods = _serving("a", "b", "c")
    plan = _plan(["a", "b", "c"], pods)
    assert plan.evict == ("a",)
    assert plan.waiting == ("b", "c")
    assert "maxUnavailable 1" in plan.why_waiting


def test_a_replica_already_unavailable_uses_up_the_budget() -> None:
    # "c" is a replacement that has not attested yet: nothing serving may go now.
    pods = [*_serving("a", "b"), pod_view(pod("c", node_name="n1", ready=False))]
    plan = _plan(["a", "b"], pods)
    assert plan.evict == ()
    assert plan.waiting == ("a", "b")
    assert "1 of 3 replicas are unavailable" in plan.why_waiting


def test_a_missing_replica_counts_as_unavailable() -> None:
    plan = _plan(["a", "b"], _serving("a", "b"))  # desired 3, one not even created yet
    assert plan.evict == ()


def test_terminating_replicas_count_as_unavailable() -> None:
    pods = [*_serving("a", "b"), pod_view(pod("c", node_name="n1", ready=True, deleting=True))]
    assert unavailable_replicas(pods, 3) == 1
    assert _plan(["a"], pods).evict == ()


def test_a_candidate_that_is_not_serving_is_replaced_at_no_cost() -> None:
    broken = pod_view(pod("c", node_name="n1", ready=False))
    plan = _plan(["a", "c"], [*_serving("a", "b"), broken])
    assert plan.evict == ("c",)
    assert plan.waiting == ("a",)


def test_a_larger_budget_replaces_more_at_once() -> None:
    pods = _serving("a", "b", "c", "d")
    assert _plan(["a", "b", "c"], pods, desired=4, max_unavailable=2).evict == ("a", "b")
    assert _plan(["a", "b"], pods, desired=4, max_unavailable="50%").evict == ("a", "b")


def test_a_zero_budget_replaces_nothing_serving() -> None:
    assert _plan(["a"], _serving("a", "b", "c"), max_unavailable=0).evict == ()


@pytest.mark.parametrize(
    "service",
    [unreachable("https://kbs.example:8443", "connection refused", "2026-01-01T00:00:00Z"),
     not_configured()],
)  # fmt: skip
def test_nothing_is_replaced_while_the_attestation_service_is_unreachable(service: Any) -> None:
    broken = pod_view(pod("c", node_name="n1", ready=False))
    plan = _plan(["a", "c"], [*_serving("a", "b"), broken], max_unavailable=3, service=service)
    assert plan.evict == ()
    assert plan.waiting == ("a", "c")
    assert plan.why_waiting == service.message


def test_the_unreachable_message_names_the_service() -> None:
    health = unreachable("https://kbs.example:8443", "connection refused", "2026-01-01T00:00:00Z")
    assert not health.reachable
    assert "https://kbs.example:8443" in health.message
    assert "connection refused" in health.message
    assert "none is replaced" in health.message


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (None, EvictionOutcome.EVICTED),
        (201, EvictionOutcome.EVICTED),
        (429, EvictionOutcome.RETRY_LATER),
        (404, EvictionOutcome.GONE),
        (500, EvictionOutcome.FAILED),
        (403, EvictionOutcome.FAILED),
    ],
)
def test_eviction_answers(status: int | None, outcome: EvictionOutcome) -> None:
    assert eviction_outcome(status) is outcome


def test_no_candidates_no_plan() -> None:
    plan = _plan([], _serving("a"))
    assert (plan.evict, plan.waiting) == ((), ())
