"""Warning Events of an EnclaveContainer: one per cause, never a figure that goes stale.

A condition's message carries figures (free EPC, replica counts) and is rewritten as
they change; an Event is written once and stays. So an Event names the cause and what
the spec asks, which hold as long as the cause does, and points to where the current
figures are; it is posted when its cause starts, once, whichever conditions share it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from kubetee.api.conditions import Condition
from kubetee.api.quantity import format_mebibytes
from kubetee.api.v1alpha1 import EnclaveContainerSpec

# "1 of 3 replicas cannot be scheduled: ", "2 of 3 replicas attested; ".
_COUNT_HEAD = re.compile(r"^\d+ of \d+ replicas[^:;]*[:;] ")


def active_causes(conditions: Iterable[Condition], warnings: frozenset[str]) -> dict[str, str]:
    """Warning reasons of the conditions that are not True, with the first one's message."""
    causes: dict[str, str] = {}
    for condition in conditions:
        if condition.status != "True" and condition.reason in warnings:
            causes.setdefault(condition.reason, condition.message)
    return causes


def new_causes(
    previous: Sequence[Condition], current: Sequence[Condition], warnings: frozenset[str]
) -> dict[str, str]:
    """Causes active now that were not before: each deserves one Warning."""
    before = active_causes(previous, warnings)
    return {r: m for r, m in active_causes(current, warnings).items() if r not in before}


def warning_message(
    reason: str, message: str, spec: EnclaveContainerSpec | None, namespace: str
) -> str:
    """The Event's text for a cause whose condition says ``message`` now."""
    pool = spec.pool_ref.name if spec is not None and spec.pool_ref else ""
    where = f"pool {pool}" if pool else "the cluster"
    if reason == "InsufficientEPC" and spec is not None:
        look = f"kubectl get epcpool {pool}" if pool else "kubectl describe nodes"
        return (
            f"replicas cannot be scheduled: each needs {format_mebibytes(spec.epc_mebibytes)} "
            f"EPC, more than any node of {where} has free ({look} shows the free EPC)"
        )
    if reason == "InsufficientEnclaveSlots":
        return f"replicas cannot be scheduled: the nodes of {where} run all the enclaves they can"
    if reason == "EPCQuotaExceeded":
        return (
            f"replicas are refused by the EPC quota of namespace {namespace} "
            f"(kubectl describe resourcequota -n {namespace} shows its use)"
        )
    # The other messages hold no figure that changes while the cause lasts, only the
    # "k of n replicas" head some of them start with.
    return _COUNT_HEAD.sub("", message, count=1) or message
