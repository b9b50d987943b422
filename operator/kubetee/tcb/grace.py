"""The attestation service's side of TCB recovery: a replica in its grace period still
attests on a platform its policy stopped accepting, until its deadline.

The operator writes the deadline (pod annotation ``kubetee.io/tcb-recovery-deadline``)
when a newer TCB evaluation makes the replica's platform unacceptable; without this, the
runtime's next periodic re-attestation would be refused and the secrets gone at once,
before the replica could be moved. Only refusals of the platform's TCB status or
advisories are graced, only before the deadline, and never a deadline further away
than the policy's ``tcbRecoveryGraceSeconds``.

Anyone who may patch the pod may edit its annotation, so the annotation alone grants
nothing: the grace also needs the pod's ``TcbRecoveryPending`` condition, in pods/status
that only the operator and this service write, and ends at the latest the policy's grace
after that condition turned True (re-writing the annotation buys no more time).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from kubetee.attestation.errors import AdvisoryNotAcceptedError, TcbStatusNotAcceptedError
from kubetee.attestation.policy import AttestationPolicy, apply_policy
from kubetee.attestation.verified import VerifiedQuote

log = logging.getLogger(__name__)


def apply_policy_in_grace(
    verified: VerifiedQuote,
    policy: AttestationPolicy,
    deadline: datetime | None,
    now: datetime,
    *,
    pending_since: datetime | None,
) -> bool:
    """Apply ``policy``; True when it refused the platform but the grace holds.

    ``deadline`` is the pod's annotation, ``pending_since`` when its ``TcbRecoveryPending``
    condition turned True (None without one)."""
    try:
        apply_policy(verified, policy)
    except (TcbStatusNotAcceptedError, AdvisoryNotAcceptedError):
        grace = timedelta(seconds=policy.tcb_recovery_grace_seconds)
        if deadline is None or pending_since is None:
            raise
        if not now < deadline <= now + grace or now >= pending_since + grace:
            raise
        return True
    return False
