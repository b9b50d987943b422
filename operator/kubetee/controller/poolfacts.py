"""What an EPCPool's status says besides EPC sums: shared nodes, lost nodes, spec checks.

The model for overlapping pools: a node's EPC is one resource, shared by every pool that
selects it, never split between them. Each pool lists the node (its replicas may run
there) with the other pools in ``sharedWith``, but only the oldest of them (by creation,
then name) counts it in its totals, so totals summed over pools count each node once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kubetee.controller.accounting import NodeAccount
from kubetee.controller.conditions import Observed
from kubetee.controller.views import NodeView

NODES_MATCH_SPEC = "NodesMatchSpec"
NODES_SHARED = "NodesShared"
QUOTAS_APPLIED = "QuotasApplied"

# Node names listed in a condition message before "and N more".
_LISTED = 5


def listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown} and {len(names) - _LISTED} more"


@dataclass(frozen=True, slots=True)
class PoolSelection:
    """A pool as the others see it: which nodes it selects, and its age."""

    name: str
    created: str
    selector: Mapping[str, str]

    def selects(self, node: NodeView) -> bool:
        return node.matches(self.selector)


@dataclass(frozen=True, slots=True)
class PoolFacts:
    """Facts about a pool's nodes that the EPC sums alone do not say."""

    pool: str = ""

    # Node -> the other pools that select it.
    shared_with: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Nodes an older pool counts in its totals.
    counted_elsewhere: frozenset[str] = frozenset()
    # Nodes that no longer exist -> replicas of this pool still bound there.
    lost: Mapping[str, int] = field(default_factory=dict)
    spec_match: Observed | None = None
    quotas: Observed | None = None


def _age(pool: PoolSelection) -> tuple[str, str]:
    return pool.created, pool.name


def counted_in(facts: PoolFacts, node: str) -> str:
    """The pool whose totals count ``node``: the oldest of those selecting it."""
    if node in facts.counted_elsewhere:
        return next((p for p in facts.shared_with.get(node, ()) if p != facts.pool), facts.pool)
    return facts.pool


def sharing(
    pool: PoolSelection, others: Iterable[PoolSelection], nodes: Iterable[NodeView]
) -> tuple[dict[str, tuple[str, ...]], frozenset[str]]:
    """(node -> other pools selecting it, nodes counted by an older pool)."""
    others = [other for other in others if other.name != pool.name]
    shared: dict[str, tuple[str, ...]] = {}
    elsewhere = set()
    for node in nodes:
        also = sorted((o for o in others if o.selects(node)), key=_age)
        if not also:
            continue
        shared[node.name] = tuple(o.name for o in also)
        if _age(also[0]) < _age(pool):
            elsewhere.add(node.name)
    return shared, frozenset(elsewhere)


def shared_condition(shared: Mapping[str, tuple[str, ...]]) -> Observed:
    if not shared:
        return Observed(
            NODES_SHARED, "False", "NoSharedNodes", "no other EPCPool selects its nodes"
        )
    pools = sorted({name for names in shared.values() for name in names})
    return Observed(
        NODES_SHARED,
        "True",
        "SharedWithPools",
        f"{listed(sorted(shared))} also in EPCPool {', '.join(pools)}: their EPC is shared, "
        "not split; only the oldest pool counts a shared node in its totals",
    )


def spec_match(
    accounts: Sequence[NodeAccount], epc_per_node: int | None, enclaves_per_node: int | None
) -> Observed:
    """Whether the nodes advertise what the spec declares (ready nodes that advertise EPC
    at all: the others are NodesReady's and EPCAvailable's concern)."""
    serving = [a.node for a in accounts if a.node.ready and a.node.capacity_mib > 0]
    if epc_per_node is not None:
        off = [n for n in serving if n.capacity_mib != epc_per_node]
        if off:
            seen = ", ".join(f"{n.name} {n.capacity_mib}Mi" for n in off[:_LISTED])
            return Observed(
                NODES_MATCH_SPEC,
                "False",
                "EPCPerNodeMismatch",
                f"spec.epcPerNode is {epc_per_node}Mi but {len(off)} nodes advertise another "
                f"kubetee.io/epc capacity ({seen}): correct spec.epcPerNode or the nodes' "
                "device plugins",
            )
    if enclaves_per_node is not None:
        off = [n for n in serving if n.enclave_capacity != enclaves_per_node]
        if off:
            seen = ", ".join(f"{n.name} {n.enclave_capacity}" for n in off[:_LISTED])
            return Observed(
                NODES_MATCH_SPEC,
                "False",
                "EnclaveSlotsMismatch",
                f"spec.maxEnclavesPerNode is {enclaves_per_node} but {len(off)} nodes "
                f"advertise another kubetee.io/enclave capacity ({seen}): correct "
                "spec.maxEnclavesPerNode or the nodes' device plugins",
            )
    return Observed(
        NODES_MATCH_SPEC,
        "True",
        "NodesMatchSpec",
        "every serving node advertises what the spec says",
    )


def quotas_condition(applied: int, missing: Sequence[str], refused: Sequence[str]) -> Observed:
    if refused:
        return Observed(
            QUOTAS_APPLIED,
            "False",
            "QuotaRefused",
            f"the apiserver refused the ResourceQuota of {'; '.join(refused)}",
        )
    if missing:
        return Observed(
            QUOTAS_APPLIED,
            "False",
            "NamespaceNotFound",
            f"namespace {', '.join(missing)} of spec.quotas does not exist: its quota is "
            "applied as soon as it is created",
        )
    return Observed(QUOTAS_APPLIED, "True", "QuotasApplied", f"{applied} namespace quotas applied")
