"""Replicas that stopped renewing their attestation, told before it expires.

A runtime renews its attestation every 120 s, and each renewal moves the pod's
``kubetee.io/attested-until``. When a renewal fails for a cause only the runtime sees
(the service unreachable from its node alone, a hung runtime, a quote it cannot make)
nothing else changes until the attestation expires minutes later and the replica goes
NotReady. This clock notices the missed renewals from the outside, whatever their
cause: an ``attested-until`` that has not moved for longer than the interval and a
margin. It keeps what it saw in memory; after a restart it counts from then, so it
can only be late, never wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kubetee.attestation_service.replicas import ReplicaAttestation

Change = Literal["overdue", "resumed"]
REATTESTATION_OVERDUE = "ReattestationOverdue"


@dataclass
class _Renewal:
    pod: tuple[str, str]  # (namespace, name)
    until: datetime
    seen_at: datetime
    reported: bool = False


class RenewalClock:
    """Per replica: when its attestation was last seen renewed, and whether we told."""

    def __init__(self, overdue_after_seconds: float) -> None:
        self.overdue_after_seconds = overdue_after_seconds
        self._renewals: dict[str, _Renewal] = {}

    def observe(self, replica: ReplicaAttestation, now: datetime) -> Change | None:
        """``overdue`` the first time a renewal is missed, ``resumed`` when one comes
        after that; None otherwise (and for replicas not attested)."""
        if replica.deleting or replica.status != "True" or replica.attested_until is None:
            self._renewals.pop(replica.uid, None)
            return None
        last = self._renewals.get(replica.uid)
        if last is None or last.until != replica.attested_until:
            pod = (replica.namespace, replica.name)
            self._renewals[replica.uid] = _Renewal(pod, replica.attested_until, now)
            return "resumed" if last is not None and last.reported else None
        if not last.reported and self.silent_seconds(replica, now) > self.overdue_after_seconds:
            last.reported = True
            return "overdue"
        return None

    def excuse(self, replica: ReplicaAttestation, now: datetime) -> None:
        """Count afresh from ``now``: no renewal could be made (the service was away)."""
        last = self._renewals.get(replica.uid)
        if last is not None:
            last.seen_at = now

    def silent_seconds(self, replica: ReplicaAttestation, now: datetime) -> float:
        """How long since the replica's attestation was last seen renewed."""
        last = self._renewals.get(replica.uid)
        return 0.0 if last is None else (now - last.seen_at).total_seconds()

    def overdue(self) -> frozenset[tuple[str, str]]:
        """(namespace, name) of the replicas named overdue and not renewed since."""
        return frozenset(r.pod for r in self._renewals.values() if r.reported)

    def forget_except(self, uids: set[str]) -> None:
        """Drop replicas no longer seen (deleted pods)."""
        for uid in set(self._renewals) - uids:
            del self._renewals[uid]
