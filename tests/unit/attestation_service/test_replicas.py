"""Replica upkeep decisions: re-attestation requests, replacement, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubetee.attestation_service.replicas import decide, replica_attestation

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def pod(
    status: str | None = "True",
    policy: str = "p1",
    until: datetime | None = NOW + timedelta(minutes=5),
    requested: str = "",
    deleting: bool = False,
) -> dict:
    annotations = {"kubetee.io/attested-policy": policy}
    if until is not None:
        annotations["kubetee.io/attested-until"] = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    if requested:
        annotations["kubetee.io/reattest-requested"] = requested
    metadata = {
        "namespace": "shop",
        "name": "payments-1",
        "uid": "u1",
        "labels": {"kubetee.io/enclave-container": "payments"},
        "annotations": annotations,
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-26T11:59:00Z"
    conditions = (
        []
        if status is None
        else [{"type": "kubetee.io/attested", "status": status, "reason": "Attested"}]
    )
    return {"metadata": metadata, "status": {"conditions": conditions}}


def test_replica_view_reads_condition_and_annotations() -> None:
    replica = replica_attestation(pod(requested="p2@1700000000"))
    assert (replica.enclave_container, replica.status, replica.attested_policy) == (
        "payments",
        "True",
        "p1",
    )
    assert replica.attested_until == NOW + timedelta(minutes=5)
    assert replica.reattest_requested == "p2@1700000000"


def test_attested_under_the_current_policy_needs_nothing() -> None:
    assert decide(replica_attestation(pod()), "p1", NOW, 60) is None


def test_policy_change_asks_for_reattestation() -> None:
    action = decide(replica_attestation(pod()), "p2", NOW, 60)
    assert action is not None
    assert (action.kind, action.reason) == ("request", "ReattestationRequested")
    assert action.request == f"p2@{int(NOW.timestamp())}"


def test_asked_replica_gets_the_grace_period_then_is_replaced() -> None:
    asked = f"p2@{int(NOW.timestamp())}"
    replica = replica_attestation(pod(requested=asked))

    assert decide(replica, "p2", NOW + timedelta(seconds=59), 60) is None
    action = decide(replica, "p2", NOW + timedelta(seconds=60), 60)
    assert action is not None
    assert (action.kind, action.reason) == ("replace", "ReattestationFailed")


def test_a_request_for_an_older_policy_is_renewed() -> None:
    replica = replica_attestation(pod(requested="p2@1700000000"))
    action = decide(replica, "p3", NOW, 60)
    assert action is not None
    assert action.kind == "request"


def test_lapsed_attestation_is_withdrawn() -> None:
    action = decide(replica_attestation(pod(until=NOW)), "p1", NOW, 60)
    assert action is not None
    assert (action.kind, action.reason) == ("withdraw", "AttestationExpired")


@pytest.mark.parametrize(
    "body", [pod(status=None), pod(status="False", policy="p0"), pod(deleting=True, policy="p0")]
)
def test_unattested_or_deleted_replicas_are_left_alone(body: dict) -> None:
    assert decide(replica_attestation(body), "p1", NOW + timedelta(days=1), 60) is None
