"""The newest TCB evaluation of each platform family, fetched and checked by the operator.

The operator reads collateral as the attestation service does (:class:`PccsCollateral`,
renewed at least every ``refresh_seconds``) and trusts a TCB Info only once its signature
chains to the pinned root (:meth:`QuoteVerifier.trusted_tcb`); which nodes have which
platform it reads from the PCS's registry ConfigMap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from kubetee.attestation.errors import QuoteVerificationError
from kubetee.attestation.tcb import TcbInfo
from kubetee.attestation.verifier import QuoteVerifier
from kubetee.attestation_service.errors import CollateralUnavailableError
from kubetee.attestation_service.evidence import CollateralSource
from kubetee.pcs.registry import PlatformRecord
from kubetee.tcb.facts import PlatformTcb, judge_platform

log = logging.getLogger(__name__)


class TcbEvaluations:
    """Judges registered platforms by the newest trusted TCB Info of their family."""

    def __init__(self, collateral: CollateralSource, root_ca_der: bytes) -> None:
        self._collateral = collateral
        self._verifier = QuoteVerifier(root_ca_der)
        self._failing: set[str] = set()

    async def tcb_info(self, fmspc: bytes, ca: str, now: datetime) -> TcbInfo | None:
        """The family's trusted TCB Info, None (logged once) while it cannot be had."""
        key = f"{fmspc.hex().upper()}/{ca}"
        try:
            collateral = await self._collateral.collateral_for(fmspc, ca, now)
            tcb_info, _ = self._verifier.trusted_tcb(collateral, now=now)
        except (CollateralUnavailableError, QuoteVerificationError) as error:
            if key not in self._failing:
                self._failing.add(key)
                log.warning("no trusted TCB Info for FMSPC %s: %s", key, error)
            return None
        if key in self._failing:
            self._failing.discard(key)
            log.info("TCB Info for FMSPC %s is available again", key)
        return tcb_info

    async def judge(self, records: Iterable[PlatformRecord], now: datetime) -> list[PlatformTcb]:
        """Each registered platform's status (platforms without a usable record skipped)."""
        judged: list[PlatformTcb] = []
        infos: dict[tuple[str, str], TcbInfo | None] = {}
        for record in records:
            family = (record.fmspc, record.ca)
            if family not in infos:
                try:
                    fmspc = bytes.fromhex(record.fmspc)
                except ValueError:
                    infos[family] = None
                else:
                    infos[family] = await self.tcb_info(fmspc, record.ca, now)
            tcb_info = infos[family]
            facts = judge_platform(record, tcb_info) if tcb_info is not None else None
            if facts is not None:
                judged.append(facts)
        return judged
