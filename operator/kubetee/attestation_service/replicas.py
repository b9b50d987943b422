"""Keeping replicas' attestation true over time: policy changes and lapsed attestations.

The attestation service marks a pod attested (condition ``kubetee.io/attested``) with
the hash of the policy it was judged by and until when that holds. The operator sweeps
the replicas and decides, with :func:`decide`:

* attested under an older policy whose last attested claims (annotation
  ``kubetee.io/attested-claims``) the new policy refuses: **replace** it, with the
  policy's reason (``IsvSvnTooLow``, ``MeasurementMismatch``, ...);
* attested under an older policy, not yet asked: **request re-attestation** (annotation
  ``kubetee.io/reattest-requested: <policy>@<time>``, which the runtime sees);
* asked, and still not attested under the current policy after the grace period
  (counted while the attestation service is reachable): **replace** it (condition
  False with reason ``ReattestationFailed``, Event, pod evicted so its Deployment
  creates a fresh one);
* attested, but the attestation's validity has passed (the runtime stopped
  re-attesting, or was refused): **withdraw** the condition (``AttestationExpired``),
  as the expiry policy says (:data:`FAIL_CLOSED`, the default: at once;
  :data:`KEEP_SERVING`: not while the attestation service cannot attest, and only a
  grace period after it can again, so an outage of the service alone never takes
  the workload down);
* marked attested without the service's annotations (KWOK's default pod stage sets
  every readiness gate True): **withdraw** it (``NotAttested``).

Only these facts move a replica out of attestation; a refused request to the service
never does, since anyone can name any pod there. How many replicas are replaced at a
time, and whether at all, is :mod:`kubetee.controller.replacement`'s decision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kubetee.attestation.errors import PolicyError
from kubetee.attestation.policy import AttestationPolicy, apply_policy
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.names import (
    ATTESTED_CLAIMS_ANNOTATION,
    ATTESTED_CONDITION,
    ATTESTED_POLICY_ANNOTATION,
    ATTESTED_UNTIL_ANNOTATION,
    EC_LABEL,
    REATTEST_ANNOTATION,
)


@dataclass(frozen=True, slots=True)
class ReplicaAttestation:
    """A replica pod, as far as its attestation goes."""

    namespace: str
    name: str
    uid: str
    enclave_container: str
    status: str | None
    reason: str
    attested_policy: str
    attested_until: datetime | None
    reattest_requested: str
    deleting: bool
    claims: Mapping[str, Any] | None = None


def replica_attestation(body: Mapping[str, Any]) -> ReplicaAttestation:
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    condition: Mapping[str, Any] = next(
        (
            c
            for c in (body.get("status") or {}).get("conditions") or []
            if c.get("type") == ATTESTED_CONDITION
        ),
        {},
    )
    return ReplicaAttestation(
        namespace=metadata.get("namespace", ""),
        name=metadata.get("name", ""),
        uid=metadata.get("uid", ""),
        enclave_container=(metadata.get("labels") or {}).get(EC_LABEL, ""),
        status=condition.get("status"),
        reason=condition.get("reason", ""),
        attested_policy=annotations.get(ATTESTED_POLICY_ANNOTATION, ""),
        attested_until=_parse_time(annotations.get(ATTESTED_UNTIL_ANNOTATION)),
        reattest_requested=annotations.get(REATTEST_ANNOTATION, ""),
        deleting=metadata.get("deletionTimestamp") is not None,
        claims=_parse_claims(annotations.get(ATTESTED_CLAIMS_ANNOTATION)),
    )


def claims_of(verified: VerifiedQuote) -> dict[str, Any]:
    """The attested facts a policy judges, as the service records them on the pod."""
    return {
        "mrenclave": verified.mrenclave.hex(),
        "mrsigner": verified.mrsigner.hex(),
        "isvProdId": verified.isv_prod_id,
        "isvSvn": verified.isv_svn,
        "debug": verified.debug,
        "tcbStatus": verified.tcb_status,
        "advisoryIds": list(verified.advisory_ids),
    }


def _judge(
    claims: Mapping[str, Any], policy: AttestationPolicy, now: datetime
) -> PolicyError | None:
    """The refusal ``policy`` gives the recorded claims, None if it accepts them."""
    try:
        verified = VerifiedQuote(
            tcb_status=str(claims["tcbStatus"]),
            advisory_ids=tuple(str(a) for a in claims["advisoryIds"]),
            mrenclave=bytes.fromhex(str(claims["mrenclave"])),
            mrsigner=bytes.fromhex(str(claims["mrsigner"])),
            isv_prod_id=int(claims["isvProdId"]),
            isv_svn=int(claims["isvSvn"]),
            debug=bool(claims["debug"]),
            report_data=b"",
            fmspc=b"",
            valid_until=now,
        )
    except (KeyError, TypeError, ValueError):
        return None  # unreadable claims: let re-attestation decide
    try:
        apply_policy(verified, policy)
    except PolicyError as refusal:
        return refusal
    return None


ExpiryPolicy = Literal["FailClosed", "KeepServing"]
FAIL_CLOSED: ExpiryPolicy = "FailClosed"
KEEP_SERVING: ExpiryPolicy = "KeepServing"


@dataclass(frozen=True, slots=True)
class Action:
    kind: Literal["request", "withdraw", "replace"]
    reason: str
    message: str
    # For "request": the annotation value asking the runtime to attest again.
    request: str = ""


def decide(
    replica: ReplicaAttestation,
    policy: AttestationPolicy,
    policy_hash: str,
    now: datetime,
    grace_seconds: float,
    *,
    reachable_since: datetime | None = None,
    reachable: bool = True,
    expiry: ExpiryPolicy = FAIL_CLOSED,
) -> Action | None:
    """What to do about one replica now, if anything.

    ``reachable_since``: when the attestation service last became reachable; the grace
    to re-attest runs from then at the earliest (a replica cannot re-attest while the
    service is down). ``reachable``: whether it can attest now. ``expiry``: the policy
    for attestations whose validity passed.
    """
    if replica.deleting or replica.status != "True":
        return None
    if not replica.attested_policy:
        # True without the service's annotations: nobody attested it (a simulator that
        # marks every readiness gate True, or a hand edit). Only the service vouches.
        return Action(
            "withdraw",
            "NotAttested",
            f"pod {replica.name} is marked attested but the attestation service never attested it",
        )
    if replica.attested_policy != policy_hash:
        return _after_policy_change(
            replica, policy, policy_hash, now, grace_seconds, reachable_since=reachable_since
        )
    if replica.attested_until is not None and replica.attested_until <= now:
        if expiry == KEEP_SERVING and not _expired_past_grace(
            replica.attested_until, now, grace_seconds, reachable, reachable_since
        ):
            return None
        return Action(
            "withdraw",
            "AttestationExpired",
            f"pod {replica.name} has not re-attested since its attestation expired at "
            f"{replica.attested_until.isoformat()}",
        )
    return None


def _expired_past_grace(
    until: datetime,
    now: datetime,
    grace_seconds: float,
    reachable: bool,
    reachable_since: datetime | None,
) -> bool:
    """Under KeepServing: the service could attest for ``grace_seconds`` since expiry."""
    if not reachable:
        return False
    since = max(until, reachable_since) if reachable_since is not None else until
    return (now - since).total_seconds() >= grace_seconds


def _after_policy_change(
    replica: ReplicaAttestation,
    policy: AttestationPolicy,
    policy_hash: str,
    now: datetime,
    grace_seconds: float,
    *,
    reachable_since: datetime | None,
) -> Action | None:
    refusal = _judge(replica.claims, policy, now) if replica.claims is not None else None
    if refusal is not None:
        return Action(
            "replace",
            refusal.reason,
            f"pod {replica.name} no longer passes the changed attestation policy: "
            f"{refusal.message}; replacing it",
        )
    requested_policy, requested_at = _parse_request(replica.reattest_requested)
    if requested_policy != policy_hash:
        return Action(
            "request",
            "ReattestationRequested",
            f"pod {replica.name} was attested under an earlier attestation policy; "
            "asked to attest again",
            request=f"{policy_hash}@{int(now.timestamp())}",
        )
    if requested_at is not None and reachable_since is not None:
        requested_at = max(requested_at, reachable_since)
    if requested_at is not None and (now - requested_at).total_seconds() >= grace_seconds:
        return Action(
            "replace",
            "ReattestationFailed",
            f"pod {replica.name} did not pass attestation under the changed policy "
            f"within {grace_seconds:.0f}s; replacing it",
        )
    return None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_claims(value: str | None) -> Mapping[str, Any] | None:
    if not value:
        return None
    try:
        claims = json.loads(value)
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _parse_request(value: str) -> tuple[str, datetime | None]:
    policy, _, stamp = value.partition("@")
    try:
        return policy, datetime.fromtimestamp(int(stamp), UTC)
    except ValueError:
        return policy, None
