"""Views read the fields the operator decides on from raw objects."""

from __future__ import annotations

from kubetee.controller.views import deployment_view, node_view, pod_request, pod_view
from tests.unit.controller.builders import INSUFFICIENT_EPC, node, pod


def test_node_view_reads_epc_and_readiness() -> None:
    view = node_view(node("n1", epc=128, ready=False))
    assert (view.capacity_mib, view.allocatable_mib, view.enclave_slots) == (128, 128, 16)
    assert view.ready is False
    assert view.matches({"kubetee.io/sgx": "true"})
    assert not view.matches({"kubetee.io/sgx": "false"})


def test_node_without_epc_counts_zero() -> None:
    body = node("n1")
    del body["status"]["allocatable"]["kubetee.io/epc"]
    assert node_view(body).allocatable_mib == 0


def test_pod_view_of_a_bound_running_replica_holds_epc() -> None:
    view = pod_view(pod("p", node_name="n1", epc=64, ready=True, attested=True))
    assert (view.epc_mib, view.enclaves, view.node) == (64, 1, "n1")
    assert view.holds_epc
    assert view.scheduled
    assert view.ready
    assert view.attested
    assert view.enclave_container == "demo"


def test_terminated_pod_holds_no_epc() -> None:
    assert not pod_view(pod("p", node_name="n1", phase="Succeeded")).holds_epc
    assert not pod_view(pod("p", node_name="n1", phase="Failed")).holds_epc


def test_terminating_pod_still_holds_epc_until_gone() -> None:
    view = pod_view(pod("p", node_name="n1", deleting=True))
    assert view.terminating
    assert view.holds_epc


def test_unschedulable_pod_keeps_the_scheduler_message() -> None:
    view = pod_view(pod("p", unschedulable=INSUFFICIENT_EPC))
    assert not view.scheduled
    assert view.unschedulable_message == INSUFFICIENT_EPC


def test_pod_request_adds_sidecars_and_takes_largest_plain_init() -> None:
    spec = {
        "containers": [{"resources": {"requests": {"kubetee.io/epc": "10"}}}],
        "initContainers": [
            {"restartPolicy": "Always", "resources": {"limits": {"kubetee.io/epc": "64"}}},
            {"resources": {"requests": {"kubetee.io/epc": "100"}}},
        ],
    }
    # The plain init container runs after the sidecar started: 64 + 100 at most.
    assert pod_request(spec, "kubetee.io/epc") == 164


def test_deployment_view_reads_owner_hash_and_failure() -> None:
    body = {
        "metadata": {
            "name": "demo",
            "namespace": "ns",
            "generation": 2,
            "annotations": {"kubetee.io/spec-hash": "abc"},
            "ownerReferences": [{"uid": "u1", "controller": True}],
        },
        "status": {
            "observedGeneration": 2,
            "conditions": [
                {"type": "ReplicaFailure", "status": "True", "message": "exceeded quota"}
            ],
        },
    }
    view = deployment_view(body)
    assert (view.controller_uid, view.spec_hash, view.replica_failure) == (
        "u1",
        "abc",
        "exceeded quota",
    )
