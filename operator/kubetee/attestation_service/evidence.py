"""Quote verification for the service: the DCAP verifier with configured trust.

The trust root and collateral are configuration: for hardware, Intel's SGX Root CA
and collateral fetched from Intel's PCS (or a PCCS) into a file; for the simulator,
the cluster's simulated authority, which issues fresh collateral itself.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from enclave_runtime.sgx.authority import SimulatedAuthority
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation.verifier import QuoteVerifier


class CollateralSource(Protocol):
    def collateral(self, now: datetime) -> Collateral: ...


class FileCollateral:
    """Collateral from a nine-field JSON file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._current: Collateral | None = None

    def collateral(self, now: datetime) -> Collateral:
        del now
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._current is None or stamp != self._stamp:
                self._current = Collateral.from_dict(json.loads(self._path.read_text()))
                self._stamp = stamp
            return self._current


class SimulatorCollateral:
    """Collateral the simulated authority signs, renewed when half its validity is used."""

    def __init__(self, authority: SimulatedAuthority) -> None:
        self._authority = authority
        self._lock = threading.Lock()
        self._issued: datetime | None = None
        self._current: Collateral | None = None
        self._refresh_after = timedelta(seconds=authority.settings.collateral_validity_seconds / 2)

    def collateral(self, now: datetime) -> Collateral:
        with self._lock:
            if (
                self._current is None
                or self._issued is None
                or (now - self._issued >= self._refresh_after or now < self._issued)
            ):
                self._current = Collateral.from_dict(self._authority.collateral(now))
                self._issued = now
            return self._current


class DcapEvidenceVerifier:
    """Verifies SGX quotes against one pinned root CA and the configured collateral."""

    def __init__(self, root_ca_der: bytes, collateral: CollateralSource) -> None:
        self._verifier = QuoteVerifier(root_ca_der)
        self._collateral = collateral

    def verify(self, quote: bytes, now: datetime) -> VerifiedQuote:
        return self._verifier.verify(quote, self._collateral.collateral(now), now=now)

    @classmethod
    def for_simulator(cls, authority_dir: Path) -> DcapEvidenceVerifier:
        authority = SimulatedAuthority.load(authority_dir)
        return cls(authority.root_ca_der, SimulatorCollateral(authority))
