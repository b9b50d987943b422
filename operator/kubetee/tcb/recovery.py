"""What TCB recovery does about one attested replica, decided from plain facts.

When a newer TCB evaluation makes a replica's platform one its policy no longer accepts
(``acceptedTcbStatuses``, ``acceptedAdvisories``), the replica's recorded claims are
judged again with its node's status under that evaluation:

* newly refused: **pending**, with a deadline ``tcbRecoveryGraceSeconds`` away (pod
  annotation ``kubetee.io/tcb-recovery-deadline`` and condition ``TcbRecoveryPending``);
  until then the attestation service still accepts it (:mod:`kubetee.tcb.grace`);
* pending, before the deadline: **move** it (evicted within the Deployment's budget and
  the PodDisruptionBudget; its replacement is placed on an accepted node);
* pending at the deadline and not moved: **withdraw** its attestation and ask its
  runtime to attest again, which the service refuses, so the runtime removes the
  secrets;
* accepted again (its node's platform was updated, or the policy widened): **recovered**.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from kubetee.attestation.errors import (
    AdvisoryNotAcceptedError,
    PolicyError,
    TcbStatusNotAcceptedError,
)
from kubetee.attestation.policy import AttestationPolicy, apply_policy
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.names import (
    ATTESTED_CLAIMS_ANNOTATION,
    ATTESTED_CONDITION,
    EC_LABEL,
)
from kubetee.tcb.facts import PlatformTcb
from kubetee.tcb.names import DEADLINE_ANNOTATION, PENDING_CONDITION, STATE_ANNOTATION, WITHDRAWN


@dataclass(frozen=True, slots=True)
class TcbReplica:
    """A replica pod, as far as TCB recovery goes."""

    namespace: str
    name: str
    uid: str
    node: str
    enclave_container: str
    attested: bool
    deleting: bool
    claims: Mapping[str, Any] | None
    deadline: datetime | None
    withdrawn: bool
    # When its TcbRecoveryPending condition turned True (kept while it stays True).
    pending_since: datetime | None = None


def tcb_replica(body: Mapping[str, Any]) -> TcbReplica:
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    attested = any(
        c.get("type") == ATTESTED_CONDITION and c.get("status") == "True"
        for c in (body.get("status") or {}).get("conditions") or ()
    )
    try:
        claims = json.loads(annotations.get(ATTESTED_CLAIMS_ANNOTATION) or "null")
    except ValueError:
        claims = None
    return TcbReplica(
        namespace=metadata.get("namespace", ""),
        name=metadata.get("name", ""),
        uid=metadata.get("uid", ""),
        node=(body.get("spec") or {}).get("nodeName") or "",
        enclave_container=(metadata.get("labels") or {}).get(EC_LABEL, ""),
        attested=attested,
        deleting=metadata.get("deletionTimestamp") is not None,
        claims=claims if isinstance(claims, dict) else None,
        deadline=parse_deadline(annotations.get(DEADLINE_ANNOTATION)),
        withdrawn=annotations.get(STATE_ANNOTATION) == WITHDRAWN,
        pending_since=pending_since(body),
    )


def pending_since(body: Mapping[str, Any]) -> datetime | None:
    """When the pod's ``TcbRecoveryPending`` condition turned True; None unless it is."""
    for condition in (body.get("status") or {}).get("conditions") or ():
        if condition.get("type") == PENDING_CONDITION and condition.get("status") == "True":
            return parse_deadline(condition.get("lastTransitionTime"))
    return None


def parse_deadline(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def platform_refusal(
    claims: Mapping[str, Any] | None, facts: PlatformTcb, policy: AttestationPolicy
) -> PolicyError | None:
    """The refusal the policy gives the replica's claims with its platform judged as
    ``facts`` says; only refusals of the platform count (identity is the upkeep's)."""
    verified = _claimed(claims)
    if verified is None:  # no readable claims: judge the platform alone
        verified = VerifiedQuote("", (), b"", b"", 0, 0, False, b"", b"", datetime.now(UTC))
        policy = AttestationPolicy.model_validate(
            {
                "acceptedTcbStatuses": policy.accepted_tcb_statuses,
                "acceptedAdvisories": policy.accepted_advisories,
                "allowDebug": True,
            }
        )
    judged = replace(verified, tcb_status=facts.status, advisory_ids=facts.advisories)
    try:
        apply_policy(judged, policy)
    except (TcbStatusNotAcceptedError, AdvisoryNotAcceptedError) as refusal:
        return refusal
    except PolicyError:
        return None
    return None


def _claimed(claims: Mapping[str, Any] | None) -> VerifiedQuote | None:
    if claims is None:
        return None
    try:
        return VerifiedQuote(
            tcb_status=str(claims["tcbStatus"]),
            advisory_ids=tuple(str(a) for a in claims["advisoryIds"]),
            mrenclave=bytes.fromhex(str(claims["mrenclave"])),
            mrsigner=bytes.fromhex(str(claims["mrsigner"])),
            isv_prod_id=int(claims["isvProdId"]),
            isv_svn=int(claims["isvSvn"]),
            debug=bool(claims["debug"]),
            report_data=b"",
            fmspc=b"",
            valid_until=datetime.now(UTC),
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Literal["pending", "move", "withdraw", "recovered"]
    reason: str
    message: str
    deadline: datetime | None = None


def judge_replica(
    replica: TcbReplica,
    facts: PlatformTcb | None,
    policy: AttestationPolicy,
    grace_seconds: int,
    now: datetime,
) -> Verdict | None:
    """What to do about ``replica`` now, if anything."""
    if replica.deleting or facts is None:
        return None
    refusal = platform_refusal(replica.claims, facts, policy)
    where = f"node {facts.node} ({facts.status} under TCB evaluation {facts.evaluation})"
    if refusal is None:
        if replica.attested and (replica.deadline is not None or replica.withdrawn):
            return Verdict(
                "recovered",
                "TcbRecovered",
                f"pod {replica.name}: the policy accepts its platform on {where} again",
            )
        return None
    if not replica.attested:
        return None  # nothing held to protect or withdraw
    return _refused(replica, where, refusal, grace_seconds, now)


def _refused(
    replica: TcbReplica, where: str, refusal: PolicyError, grace_seconds: int, now: datetime
) -> Verdict:
    if replica.deadline is None:
        # A deadline annotation removed while the condition stayed True restarts nothing.
        deadline = (replica.pending_since or now) + timedelta(seconds=grace_seconds)
        return Verdict(
            "pending",
            PENDING_CONDITION,
            f"pod {replica.name} runs on {where}, which attestation.policy no longer accepts "
            f"({refusal.message}); it is moved to an accepted node before "
            f"{format_time(deadline)}, else its secrets are withdrawn then",
            deadline,
        )
    if now >= replica.deadline:
        return Verdict(
            "withdraw",
            "TcbRecoveryDeadlinePassed",
            f"pod {replica.name} could not be moved off {where} before "
            f"{format_time(replica.deadline)}: its attestation is withdrawn and its "
            "runtime removes the secrets",
            replica.deadline,
        )
    return Verdict(
        "move",
        "TcbRecoveryMoving",
        f"pod {replica.name} is moved off {where} to a node the policy accepts "
        f"(deadline {format_time(replica.deadline)})",
        replica.deadline,
    )
