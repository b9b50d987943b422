"""TCB recovery's plain decisions: a node's status under a TCB Info, its labels, the
verdict on each replica, the service's grace, and placement by the status label."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from enclave_runtime.sgx.authority import DEFAULT_TCB_LEVELS, SimulatedAuthority
from kubetee.api.v1alpha1 import EnclaveContainerSpec, EPCPoolSpec, EPCPoolStatus
from kubetee.attestation.errors import TcbStatusNotAcceptedError
from kubetee.attestation.policy import AttestationPolicy
from kubetee.attestation.tcb import parse_tcb_info
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.workloads import policy_hash
from kubetee.controller.accounting import NodeAccount
from kubetee.controller.deployment import Owner, Placement, build_deployment
from kubetee.controller.poolstatus import compute_pool_status
from kubetee.controller.sidecar import RuntimeSettings
from kubetee.controller.views import node_view
from kubetee.pcs import evaluations
from kubetee.pcs.registry import PlatformRecord
from kubetee.tcb.facts import PlatformTcb, judge_platform, node_patch
from kubetee.tcb.grace import apply_policy_in_grace
from kubetee.tcb.names import DEADLINE_ANNOTATION, TCB_STATUS_LABEL
from kubetee.tcb.recovery import TcbReplica, judge_replica, tcb_replica
from tests.unit.controller.builders import SIGNER, ec_spec, node, pool_spec

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FMSPC = bytes.fromhex("00606A000000")


def _record(node: str, level_index: int = 0) -> PlatformRecord:
    level = DEFAULT_TCB_LEVELS[level_index]
    return PlatformRecord(
        node=node, ppid="00" * 16, fmspc="00606A000000", ca="platform",
        pck_key_sha256="ab" * 32, pck_serial="1", registered_at="", registered_by="",
        tcb_components=bytes(level.components).hex(), pcesvn=str(level.pcesvn),
    )  # fmt: skip


def _tcb_info(published: bool) -> Any:
    authority = SimulatedAuthority.generate()
    if published:
        evaluations.publish(
            authority.settings, FMSPC, raise_component=0, pcesvn=None,
            previous_status="OutOfDate", advisories=("INTEL-SA-01234",), now=NOW,
        )  # fmt: skip
    text, _, _ = authority.signed_tcb_info(FMSPC, NOW)
    return parse_tcb_info(text)


def test_a_node_is_judged_by_its_families_newest_evaluation() -> None:
    before = judge_platform(_record("n1"), _tcb_info(published=False))
    after = judge_platform(_record("n1"), _tcb_info(published=True))
    assert before is not None
    assert after is not None
    assert (before.status, before.evaluation) == ("UpToDate", 17)
    assert (after.status, after.evaluation) == ("OutOfDate", 18)
    assert "INTEL-SA-01234" in after.advisories
    assert after.labels() == {
        "kubetee.io/sgx-fmspc": "00606A000000",
        "kubetee.io/sgx-pck-ca": "platform",
        "kubetee.io/sgx-tcb-status": "OutOfDate",
        "kubetee.io/sgx-tcb-evaluation": "18",
    }
    assert node_patch(before.labels(), after) is not None
    assert node_patch(after.labels(), after) is None


def test_a_record_without_its_tcb_or_of_another_family_is_not_judged() -> None:
    old = PlatformRecord.from_json(
        json.dumps({k: v for k, v in json.loads(_record("n1").to_json()).items()
                    if k not in ("tcb_components", "pcesvn")})
    )  # fmt: skip
    assert old is not None  # a record written before the TCB was kept still reads
    assert judge_platform(old, _tcb_info(published=False)) is None
    other = PlatformRecord(**{**json.loads(_record("n1").to_json()), "fmspc": "00906ED50000"})
    assert judge_platform(other, _tcb_info(published=False)) is None


def _policy(**extra: Any) -> AttestationPolicy:
    return AttestationPolicy.model_validate({"mrsigner": [SIGNER], **extra})


def _facts(status: str) -> PlatformTcb:
    return PlatformTcb("n2", "00606A000000", "platform", status, ("INTEL-SA-01234",), 18)


def _replica(**overrides: Any) -> TcbReplica:
    claims = {
        "mrenclave": "11" * 32, "mrsigner": SIGNER, "isvProdId": 0, "isvSvn": 1,
        "debug": False, "tcbStatus": "UpToDate", "advisoryIds": [],
    }  # fmt: skip
    fields: dict[str, Any] = {
        "namespace": "shop", "name": "pay-1", "uid": "u1", "node": "n2",
        "enclave_container": "pay", "attested": True, "deleting": False,
        "claims": claims, "deadline": None, "withdrawn": False,
    }  # fmt: skip
    fields.update(overrides)
    return TcbReplica(**fields)


def test_a_replica_on_a_newly_refused_platform_goes_pending_then_moves_then_is_withdrawn() -> None:
    policy = _policy(tcbRecoveryGraceSeconds=600)
    pending = judge_replica(_replica(), _facts("OutOfDate"), policy, 600, NOW)
    assert pending is not None
    assert pending.kind == "pending"
    assert pending.deadline == NOW + timedelta(seconds=600)
    assert "OutOfDate" in pending.message
    assert "2026-11-30T12:10:00Z" in pending.message
    deadline = NOW + timedelta(seconds=600)
    moving = judge_replica(_replica(deadline=deadline), _facts("OutOfDate"), policy, 600, NOW)
    assert moving is not None
    assert moving.kind == "move"
    late = judge_replica(_replica(deadline=deadline), _facts("OutOfDate"), policy, 600, deadline)
    assert late is not None
    assert late.kind == "withdraw"
    assert late.reason == "TcbRecoveryDeadlinePassed"


def test_an_accepting_policy_or_an_updated_platform_needs_nothing_or_recovers() -> None:
    widened = _policy(acceptedTcbStatuses=["UpToDate", "OutOfDate"])
    assert judge_replica(_replica(), _facts("OutOfDate"), widened, 600, NOW) is None
    recovered = judge_replica(
        _replica(deadline=NOW, withdrawn=True), _facts("UpToDate"), _policy(), 600, NOW
    )
    assert recovered is not None
    assert recovered.kind == "recovered"
    # Not attested (being refused, or already withdrawn): nothing to move or withdraw.
    assert judge_replica(_replica(attested=False), _facts("OutOfDate"), _policy(), 600, NOW) is None
    # An advisory the policy does not list refuses the platform too.
    strict = _policy(acceptedAdvisories=[])
    verdict = judge_replica(_replica(), _facts("UpToDate"), strict, 600, NOW)
    assert verdict is not None
    assert verdict.kind == "pending"
    # A node whose platform is unknown is not judged.
    assert judge_replica(_replica(), None, _policy(), 600, NOW) is None


def test_the_replica_view_reads_its_recovery_annotations() -> None:
    body = {
        "metadata": {
            "namespace": "shop", "name": "pay-1", "uid": "u1",
            "labels": {"kubetee.io/enclave-container": "pay"},
            "annotations": {
                DEADLINE_ANNOTATION: "2026-11-30T12:10:00Z", "kubetee.io/attested-claims": "{",
            },
        },
        "spec": {"nodeName": "n2"},
        "status": {"conditions": [{"type": "kubetee.io/attested", "status": "True"}]},
    }  # fmt: skip
    replica = tcb_replica(body)
    assert replica.deadline == datetime(2026, 11, 30, 12, 10, tzinfo=UTC)
    assert replica.attested
    assert replica.claims is None
    assert replica.node == "n2"


def _verified(status: str) -> VerifiedQuote:
    return VerifiedQuote(status, (), bytes(32), bytes.fromhex(SIGNER), 0, 1, False, b"", FMSPC, NOW)


def test_the_service_graces_only_a_refused_platform_and_only_before_a_bounded_deadline() -> None:
    policy = _policy(tcbRecoveryGraceSeconds=600)
    later = NOW + timedelta(seconds=300)
    since = NOW - timedelta(seconds=60)
    assert apply_policy_in_grace(_verified("OutOfDate"), policy, later, NOW, pending_since=since)
    assert not apply_policy_in_grace(_verified("UpToDate"), policy, None, NOW, pending_since=None)
    for deadline in (None, NOW, NOW - timedelta(seconds=1), NOW + timedelta(seconds=601)):
        with pytest.raises(TcbStatusNotAcceptedError):
            apply_policy_in_grace(
                _verified("OutOfDate"), policy, deadline, NOW, pending_since=since
            )


def test_an_annotation_edited_by_whoever_may_patch_pods_buys_no_grace() -> None:
    policy = _policy(tcbRecoveryGraceSeconds=600)
    later = NOW + timedelta(seconds=300)
    # A deadline annotation without the operator's TcbRecoveryPending condition (which is
    # in pods/status): no grace at all.
    with pytest.raises(TcbStatusNotAcceptedError):
        apply_policy_in_grace(_verified("OutOfDate"), policy, later, NOW, pending_since=None)
    # Re-written forward, it still ends the policy's grace after the condition turned True.
    long_ago = NOW - timedelta(seconds=600)
    with pytest.raises(TcbStatusNotAcceptedError):
        apply_policy_in_grace(_verified("OutOfDate"), policy, later, NOW, pending_since=long_ago)


def test_a_deadline_annotation_removed_while_pending_restarts_no_grace() -> None:
    policy = _policy(tcbRecoveryGraceSeconds=600)
    since = NOW - timedelta(seconds=500)
    again = judge_replica(_replica(pending_since=since), _facts("OutOfDate"), policy, 600, NOW)
    assert again is not None
    assert again.kind == "pending"
    assert again.deadline == since + timedelta(seconds=600)  # not NOW + 600


def test_the_pending_condition_gives_the_moment_recovery_began() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "pay-1", "namespace": "shop"},
        "status": {"conditions": [
            {"type": "TcbRecoveryPending", "status": "True",
             "lastTransitionTime": "2026-11-30T11:55:00Z"},
        ]},
    }  # fmt: skip
    assert tcb_replica(body).pending_since == datetime(2026, 11, 30, 11, 55, tzinfo=UTC)
    body["status"]["conditions"][0]["status"] = "False"
    assert tcb_replica(body).pending_since is None


def test_the_grace_is_no_part_of_the_policys_identity_and_is_validated() -> None:
    assert policy_hash(_policy()) == policy_hash(_policy(tcbRecoveryGraceSeconds=60))
    assert _policy().tcb_recovery_grace_seconds == 3600
    with pytest.raises(ValueError, match="tcbRecoveryGraceSeconds"):
        _policy(tcbRecoveryGraceSeconds=-1)


def test_replicas_are_placed_only_on_nodes_whose_tcb_status_the_policy_accepts() -> None:
    placement = Placement.of_pool("sgx", EPCPoolSpec.model_validate(pool_spec()))
    spec = EnclaveContainerSpec.model_validate(
        ec_spec(attestation={"policy": {"mrsigner": [SIGNER], "acceptedTcbStatuses": ["UpToDate"]}})
    )
    owner = Owner("ns", "demo", "uid-1")
    on = build_deployment(owner, spec, placement, RuntimeSettings("img", tcb_placement=True))
    off = build_deployment(owner, spec, placement, RuntimeSettings("img"))
    (term,) = on["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert {"key": TCB_STATUS_LABEL, "operator": "In", "values": ["UpToDate"]} in term[
        "matchExpressions"
    ]
    assert TCB_STATUS_LABEL not in json.dumps(off)


def test_the_pool_counts_its_nodes_by_tcb_status() -> None:
    statuses = {"n1": "UpToDate", "n2": "OutOfDate", "n3": "UpToDate"}
    accounts = [
        NodeAccount(node_view(node(name, labels={TCB_STATUS_LABEL: status})), 0, 0)
        for name, status in statuses.items()
    ]
    status = compute_pool_status(accounts, 1, EPCPoolStatus(), NOW)
    assert status.tcb_statuses == {"OutOfDate": 1, "UpToDate": 2}
    assert {n.name: n.tcb_status for n in status.nodes} == statuses
    unjudged = compute_pool_status(
        [NodeAccount(node_view(node("n1")), 0, 0)], 1, EPCPoolStatus(), NOW
    )
    assert unjudged.tcb_statuses == {}
    assert unjudged.nodes[0].tcb_status == ""
