"""Warning Events of an EPCPool in words that stay true while the cause lasts.

A condition's message counts nodes and replicas and is rewritten as they change; an Event
is written once. So the Event names the cause and the nodes it started with, never a
count that the status may already have superseded.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubetee.api.quantity import parse_mebibytes
from kubetee.api.v1alpha1 import EPCPoolSpec, EPCPoolStatus
from kubetee.controller.poolfacts import PoolFacts, listed


def _nodes(names: Iterable[str]) -> str:
    return listed(sorted(names))


def pool_event_message(
    reason: str, message: str, status: EPCPoolStatus, facts: PoolFacts, spec: EPCPoolSpec
) -> str:
    """The Event's text for ``reason``, whose condition says ``message`` now."""
    if reason == "NodeNotReady":
        return f"node {_nodes(n.name for n in status.nodes if not n.ready)} not ready"
    if reason == "NodeLostEPC":
        lost = (n.name for n in status.nodes if n.ready and n.allocatable == "0Mi")
        return (
            f"node {_nodes(lost)} advertises no kubetee.io/epc (is the device plugin running "
            "there?)"
        )
    if reason == "NodeLost":
        return (
            f"node {_nodes(facts.lost)} no longer exists; replicas of the pool bound there "
            "are being replaced"
        )
    if reason == "EPCPerNodeMismatch" and spec.epc_per_node is not None:
        declared = parse_mebibytes(spec.epc_per_node)
        off = (
            n.name
            for n in status.nodes
            if n.ready and n.capacity != "0Mi" and parse_mebibytes(n.capacity) != declared
        )
        return (
            f"node {_nodes(off)} advertises another kubetee.io/epc capacity than "
            f"spec.epcPerNode {spec.epc_per_node}"
        )
    if reason == "EnclaveSlotsMismatch":
        return (
            f"nodes advertise another kubetee.io/enclave capacity than "
            f"spec.maxEnclavesPerNode {spec.max_enclaves_per_node} (see the NodesMatchSpec "
            "condition)"
        )
    return message
