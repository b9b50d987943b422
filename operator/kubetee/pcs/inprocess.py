"""The simulated PCS's collateral without HTTP: for tests and benchmarks in one process.

It signs with the authority's private keys, so no deployed component uses it: the
attestation service fetches collateral from a PCCS (:mod:`kubetee.attestation_service.pccs`).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from enclave_runtime.sgx.authority import SimulatedAuthority
from kubetee.attestation.collateral import Collateral


class InProcessCollateral:
    """Collateral signed in-process by a simulated authority (tests and benchmarks only:
    it needs the authority's private keys), renewed at half its validity."""

    def __init__(self, authority: SimulatedAuthority) -> None:
        self._authority = authority
        self._lock = threading.Lock()
        self._issued: dict[tuple[bytes, str], tuple[datetime, Collateral]] = {}
        self._refresh_after = timedelta(seconds=authority.settings.collateral_validity_seconds / 2)

    async def collateral_for(self, fmspc: bytes, ca: str, now: datetime) -> Collateral:
        settings = self._authority.settings
        key = (fmspc if fmspc in settings.fmspcs else settings.fmspc, ca)
        with self._lock:
            entry = self._issued.get(key)
            if entry is None or not entry[0] <= now < entry[0] + self._refresh_after:
                document = self._authority.collateral(now, fmspc=key[0], ca=ca)
                entry = (now, Collateral.from_dict(document))
                self._issued[key] = entry
            return entry[1]
