"""EnclaveContainer status: counts, EPC, and conditions whose reasons say what blocks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kubetee.api.v1alpha1 import EnclaveContainerSpec, EnclaveContainerStatus
from kubetee.attestation.policy import AttestationPolicy
from kubetee.controller.accounting import FreeEPC
from kubetee.controller.ecstatus import Blocker, Observation, compute_status, pinned_summary
from kubetee.controller.service_health import (
    REACHABLE,
    ServiceHealth,
    not_configured,
    unreachable,
)
from kubetee.controller.views import pod_view
from tests.unit.controller.builders import INSUFFICIENT_EPC, SIGNER, ec_spec, pod

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NO_FREE_EPC = FreeEPC(0, 0, 3, 3)


def _status(
    pods: Sequence[dict[str, Any]],
    replicas: int = 3,
    blocker: Blocker | None = None,
    free: FreeEPC = NO_FREE_EPC,
) -> EnclaveContainerStatus:
    obs = Observation(
        name="demo",
        generation=4,
        spec=EnclaveContainerSpec.model_validate(ec_spec(replicas=replicas)),
        pool="sgx",
        blocker=blocker,
        pods=[pod_view(p) for p in pods],
        deployment=None,
        free=free,
    )
    return compute_status(obs, EnclaveContainerStatus(), NOW)


def _reasons(status: EnclaveContainerStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_all_running_attested_and_ready() -> None:
    pods = [pod(f"p{i}", node_name="n1", ready=True, attested=True) for i in range(3)]
    status = _status(pods)
    assert _reasons(status) == {
        "Scheduled": ("True", "ReplicasScheduled"),
        "Attested": ("True", "ReplicasAttested"),
        "Ready": ("True", "ReplicasReady"),
    }
    assert (status.replicas, status.ready_replicas, status.attested_replicas) == (3, 3, 3)
    assert (status.epc.per_replica, status.epc.requested, status.epc.allocated) == (
        "64Mi",
        "192Mi",
        "192Mi",
    )
    assert status.selector == "kubetee.io/enclave-container=demo"
    assert status.observed_generation == 4


def test_pending_for_epc_names_the_free_epc_of_the_pool() -> None:
    pods = [pod(f"p{i}", node_name="n1") for i in range(6)]
    pods.append(pod("p6", unschedulable=INSUFFICIENT_EPC))
    status = _status(pods, replicas=7, free=FreeEPC(32, 32, 3, 3))
    scheduled = status.condition("Scheduled")
    assert scheduled is not None
    assert (scheduled.status, scheduled.reason) == ("False", "InsufficientEPC")
    assert scheduled.message == (
        "1 of 7 replicas cannot be scheduled: each needs 64Mi EPC and pool sgx has 32Mi free "
        "(at most 32Mi on one node, 3 of 3 nodes ready)"
    )
    assert _reasons(status)["Ready"] == ("False", "InsufficientEPC")
    assert status.epc.allocated == "384Mi"
    assert status.epc.requested == "448Mi"


def test_other_unschedulable_reasons_are_passed_through() -> None:
    pods = [pod("p0", unschedulable="0/3 nodes are available: 3 node(s) had untolerated taint")]
    status = _status(pods, replicas=1)
    scheduled = status.condition("Scheduled")
    assert scheduled is not None
    assert scheduled.reason == "Unschedulable"
    assert "untolerated taint" in scheduled.message


def test_waiting_for_scheduler_is_unknown_not_false() -> None:
    assert _reasons(_status([pod("p0")], replicas=1))["Scheduled"] == ("Unknown", "Scheduling")


def test_ready_without_attestation_is_not_ready() -> None:
    pods = [pod(f"p{i}", node_name="n1", ready=True, attested=False) for i in range(3)]
    status = _status(pods)
    assert status.ready_replicas == 0
    assert _reasons(status)["Ready"] == ("False", "AttestationPending")


def test_scheduled_but_not_attested() -> None:
    pods = [pod(f"p{i}", node_name="n1") for i in range(3)]
    reasons = _reasons(_status(pods))
    assert reasons["Attested"] == ("False", "AttestationPending")
    assert reasons["Ready"] == ("False", "AttestationPending")


def test_a_blocker_sets_every_condition_with_its_reason() -> None:
    blocker = Blocker("PoolNotFound", "EPCPool 'sgx' does not exist")
    status = _status([], blocker=blocker)
    assert {c.reason for c in status.conditions} == {"PoolNotFound"}
    assert {c.status for c in status.conditions} == {"False"}


def test_terminating_pods_hold_epc_but_are_not_replicas() -> None:
    pods = [pod("old", node_name="n1", deleting=True), pod("new", node_name="n2")]
    status = _status(pods, replicas=1)
    assert status.replicas == 1
    assert status.epc.allocated == "128Mi"


def test_recomputing_an_unchanged_state_gives_an_equal_status() -> None:
    pods = [pod("p0", node_name="n1")]
    first = _status(pods, replicas=1)
    obs = Observation(
        "demo",
        4,
        EnclaveContainerSpec.model_validate(ec_spec(replicas=1)),
        "sgx",
        None,
        [pod_view(p) for p in pods],
        None,
        FreeEPC(0, 0, 0, 0),
    )
    later = compute_status(obs, first, datetime(2026, 2, 1, tzinfo=UTC))
    assert later == first


def _status_with(pods: Sequence[dict[str, Any]], service: ServiceHealth) -> EnclaveContainerStatus:
    obs = Observation(
        name="demo",
        generation=4,
        spec=EnclaveContainerSpec.model_validate(ec_spec(replicas=3)),
        pool="sgx",
        blocker=None,
        pods=[pod_view(p) for p in pods],
        deployment=None,
        free=NO_FREE_EPC,
        attestation=service,
    )
    return compute_status(obs, EnclaveContainerStatus(), NOW)


DOWN = unreachable("https://kbs.test:8443", "connection refused", "2026-01-01T00:00:00Z")


def test_an_unreachable_attestation_service_is_the_reason_and_is_named() -> None:
    pods = [pod(f"p{i}", node_name="n1", ready=i == 0, attested=i == 0) for i in range(3)]
    status = _status_with(pods, DOWN)
    assert _reasons(status) == {
        "Scheduled": ("True", "ReplicasScheduled"),
        "Attested": ("False", "AttestationUnavailable"),
        "Ready": ("False", "AttestationUnavailable"),
    }
    attested = status.condition("Attested")
    assert attested is not None
    assert "1 of 3 replicas attested" in attested.message
    assert "https://kbs.test:8443" in attested.message


def test_attested_replicas_stay_ready_but_their_attestation_is_unknown() -> None:
    pods = [pod(f"p{i}", node_name="n1", ready=True, attested=True) for i in range(3)]
    reasons = _reasons(_status_with(pods, DOWN))
    assert reasons["Attested"] == ("Unknown", "AttestationUnavailable")
    assert reasons["Ready"] == ("True", "ReplicasReady")


def test_no_attestation_service_configured_says_how_to_configure_one() -> None:
    status = _status_with([pod("p0", node_name="n1")], not_configured())
    attested = status.condition("Attested")
    assert attested is not None
    assert attested.reason == "AttestationUnavailable"
    assert "KUBETEE_ATTESTATION_URL" in attested.message


def _claimed(name: str, mrenclave: str, svn: int) -> dict[str, Any]:
    body = pod(name, node_name="n1", ready=True, attested=True)
    claims = {"mrenclave": mrenclave, "mrsigner": SIGNER, "isvProdId": 1, "isvSvn": svn}
    body["metadata"]["annotations"] = {"kubetee.io/attested-claims": json.dumps(claims)}
    return body


def test_status_says_what_is_pinned_and_what_replicas_proved() -> None:
    pods = [
        _claimed("p0", "aa" * 32, 2),
        _claimed("p1", "aa" * 32, 2),
        _claimed("p2", "bb" * 32, 3),
    ]
    pods.append(pod("p3", node_name="n1"))  # not attested: proves nothing
    status = _status_with(pods, REACHABLE)
    assert status.attestation.pinned == f"MRENCLAVE any, MRSIGNER {SIGNER[:16]}…"
    assert [(e.mrenclave, e.isv_svn, e.replicas) for e in status.attestation.enclaves] == [
        ("aa" * 32, 2, 2),
        ("bb" * 32, 3, 1),
    ]
    assert status.attestation.enclaves[0].mrsigner == SIGNER


def test_pinned_summary_abbreviates_and_counts() -> None:
    policy = AttestationPolicy(mrenclave=["aa" * 32, "bb" * 32], mrsigner=["cc" * 32])
    assert pinned_summary(policy) == f"MRENCLAVE {'aa' * 8}… or 1 more, MRSIGNER {'cc' * 8}…"


def _status_on_broken_node(
    pods: Sequence[dict[str, Any]],
    cannot_attest: frozenset[str] = frozenset({"n2"}),
    overdue: frozenset[str] = frozenset(),
) -> EnclaveContainerStatus:
    obs = Observation(
        name="demo",
        generation=4,
        spec=EnclaveContainerSpec.model_validate(ec_spec(replicas=3)),
        pool="sgx",
        blocker=None,
        pods=[pod_view(p) for p in pods],
        deployment=None,
        free=NO_FREE_EPC,
        nodes_cannot_attest=cannot_attest,
        overdue=overdue,
    )
    return compute_status(obs, EnclaveContainerStatus(), NOW)


def test_replicas_on_a_node_that_cannot_attest_name_it_as_the_cause() -> None:
    pods = [
        pod("p0", node_name="n1", ready=True, attested=True),
        pod("p1", node_name="n1", ready=True, attested=True),
        pod("p2", node_name="n2"),
    ]
    status = _status_on_broken_node(pods)
    assert _reasons(status)["Attested"] == ("False", "NodeCannotAttest")
    assert _reasons(status)["Ready"] == ("False", "NodeCannotAttest")
    attested = next(c for c in status.conditions if c.type == "Attested")
    assert "1 replica on node n2 cannot attest" in attested.message
    assert "quoting service" in attested.message


def test_attested_replicas_on_such_a_node_are_attested_but_said_at_risk() -> None:
    pods = [pod(f"p{i}", node_name=f"n{i}", ready=True, attested=True) for i in range(3)]
    status = _status_on_broken_node(pods)
    assert _reasons(status)["Attested"] == ("True", "ReplicasAttested")
    attested = next(c for c in status.conditions if c.type == "Attested")
    assert "1 replica on node n2 cannot re-attest" in attested.message


def test_replicas_that_stopped_renewing_are_attested_but_named_overdue() -> None:
    pods = [pod(f"p{i}", node_name=f"n{i}", ready=True, attested=True) for i in range(3)]
    status = _status_on_broken_node(pods, frozenset(), overdue=frozenset({"p1"}))
    assert _reasons(status)["Attested"] == ("True", "ReattestationOverdue")
    assert _reasons(status)["Ready"] == ("True", "ReplicasReady")  # still serving
    attested = next(c for c in status.conditions if c.type == "Attested")
    assert "p1 stopped renewing their attestation" in attested.message
    # Renewed again: the plain reason comes back.
    renewed = _status_on_broken_node(pods, frozenset())
    assert _reasons(renewed)["Attested"] == ("True", "ReplicasAttested")


def test_a_known_node_cause_wins_over_overdue() -> None:
    pods = [pod(f"p{i}", node_name=f"n{i}", ready=True, attested=True) for i in range(3)]
    status = _status_on_broken_node(pods, overdue=frozenset({"p2"}))
    assert _reasons(status)["Attested"] == ("True", "ReplicasAttested")
    attested = next(c for c in status.conditions if c.type == "Attested")
    assert "1 replica on node n2 cannot re-attest" in attested.message
