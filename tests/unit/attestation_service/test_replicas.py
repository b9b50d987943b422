"""Replica upkeep decisions: re-attestation requests, replacement, expiry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kubetee.attestation.policy import AttestationPolicy
from kubetee.attestation_service.replicas import decide, replica_attestation

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ANY = AttestationPolicy()
CLAIMS = {
    "mrenclave": "aa" * 32,
    "mrsigner": "bb" * 32,
    "isvProdId": 7,
    "isvSvn": 3,
    "debug": False,
    "tcbStatus": "UpToDate",
    "advisoryIds": [],
}


def pod(  # noqa: PLR0917  # a fixture builder with defaults
    status: str | None = "True",
    policy: str = "p1",
    until: datetime | None = NOW + timedelta(minutes=5),
    requested: str = "",
    deleting: bool = False,
    claims: dict | None = None,
) -> dict:
    annotations = {"kubetee.io/attested-policy": policy}
    if claims is not None:
        annotations["kubetee.io/attested-claims"] = json.dumps(claims)
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
    assert decide(replica_attestation(pod()), ANY, "p1", NOW, 60) is None


def test_policy_change_asks_for_reattestation() -> None:
    action = decide(replica_attestation(pod()), ANY, "p2", NOW, 60)
    assert action is not None
    assert (action.kind, action.reason) == ("request", "ReattestationRequested")
    assert action.request == f"p2@{int(NOW.timestamp())}"


def test_asked_replica_gets_the_grace_period_then_is_replaced() -> None:
    asked = f"p2@{int(NOW.timestamp())}"
    replica = replica_attestation(pod(requested=asked))

    assert decide(replica, ANY, "p2", NOW + timedelta(seconds=59), 60) is None
    action = decide(replica, ANY, "p2", NOW + timedelta(seconds=60), 60)
    assert action is not None
    assert (action.kind, action.reason) == ("replace", "ReattestationFailed")


def test_a_request_for_an_older_policy_is_renewed() -> None:
    replica = replica_attestation(pod(requested="p2@1700000000"))
    action = decide(replica, ANY, "p3", NOW, 60)
    assert action is not None
    assert action.kind == "request"


def test_lapsed_attestation_is_withdrawn() -> None:
    action = decide(replica_attestation(pod(until=NOW)), ANY, "p1", NOW, 60)
    assert action is not None
    assert (action.kind, action.reason) == ("withdraw", "AttestationExpired")


@pytest.mark.parametrize(
    "body", [pod(status=None), pod(status="False", policy="p0"), pod(deleting=True, policy="p0")]
)
def test_unattested_or_deleted_replicas_are_left_alone(body: dict) -> None:
    assert decide(replica_attestation(body), ANY, "p1", NOW + timedelta(days=1), 60) is None


def test_claims_the_new_policy_refuses_mean_immediate_replacement() -> None:
    replica = replica_attestation(pod(claims=CLAIMS))

    action = decide(replica, AttestationPolicy(min_isv_svn=4), "p2", NOW, 60)

    assert action is not None
    assert (action.kind, action.reason) == ("replace", "IsvSvnTooLow")
    assert "below attestation.policy.minIsvSvn 4" in action.message


def test_claims_the_new_policy_accepts_still_need_fresh_evidence() -> None:
    replica = replica_attestation(pod(claims=CLAIMS))
    action = decide(replica, AttestationPolicy(min_isv_svn=3), "p2", NOW, 60)
    assert action is not None
    assert action.kind == "request"


def test_condition_the_service_did_not_set_is_withdrawn() -> None:
    body = pod()
    del body["metadata"]["annotations"]["kubetee.io/attested-policy"]
    action = decide(replica_attestation(body), ANY, "p1", NOW, 60)
    assert action is not None
    assert (action.kind, action.reason) == ("withdraw", "NotAttested")


def test_grace_runs_from_when_the_attestation_service_answered_again() -> None:
    asked = pod(policy="p1", requested=f"p2@{int((NOW - timedelta(minutes=10)).timestamp())}")
    replica = replica_attestation(asked)
    assert decide(replica, ANY, "p2", NOW, 60).kind == "replace"  # type: ignore[union-attr]
    back = NOW - timedelta(seconds=30)
    assert decide(replica, ANY, "p2", NOW, 60, reachable_since=back) is None
    later = NOW + timedelta(seconds=31)
    assert decide(replica, ANY, "p2", later, 60, reachable_since=back).kind == "replace"  # type: ignore[union-attr]


def test_keep_serving_holds_an_expired_attestation_through_a_service_outage() -> None:
    expired = replica_attestation(pod(until=NOW - timedelta(minutes=2)))
    down = decide(expired, ANY, "p1", NOW, 60, reachable=False, expiry="KeepServing")
    assert down is None  # the service cannot attest: not the replica's fault
    back = NOW - timedelta(seconds=30)
    soon = decide(
        expired, ANY, "p1", NOW, 60, reachable=True, reachable_since=back, expiry="KeepServing"
    )
    assert soon is None  # the runtime gets the grace to re-attest
    later = NOW + timedelta(seconds=31)
    action = decide(
        expired, ANY, "p1", later, 60, reachable=True, reachable_since=back, expiry="KeepServing"
    )
    assert action is not None
    assert action.reason == "AttestationExpired"
    # FailClosed (the default) withdraws at once, outage or not.
    closed = decide(expired, ANY, "p1", NOW, 60, reachable=False)
    assert closed is not None
    assert closed.reason == "AttestationExpired"
