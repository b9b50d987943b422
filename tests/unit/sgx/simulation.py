"""A simulated SGX world shared by the sgx and attestation tests, built once per process."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.enclave import EnclaveSigner, make_report_body, measure_enclave
from enclave_runtime.sgx.platform import SimulatedPlatform

# Collateral is issued at ISSUED and checked an hour later, inside its 30-day window.
ISSUED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
VERIFY_AT = ISSUED + timedelta(hours=1)
STATUSES = ("UpToDate", "SWHardeningNeeded", "OutOfDate", "Revoked")
REPORT_DATA = b"nonce-from-the-attestation-service"


@dataclass(frozen=True)
class SimulatedWorld:
    authority: SimulatedAuthority
    platforms: dict[str, SimulatedPlatform]
    signer: EnclaveSigner
    mrenclave: bytes

    def quote(self, status: str = "UpToDate", *, debug: bool = False, isv_svn: int = 2) -> bytes:
        body = make_report_body(
            self.mrenclave,
            self.signer.mrsigner,
            debug=debug,
            isv_prod_id=7,
            isv_svn=isv_svn,
            report_data=REPORT_DATA,
        )
        return self.platforms[status].quote(body)


@functools.cache
def simulated_world() -> SimulatedWorld:
    authority = SimulatedAuthority.generate(now=ISSUED)
    platforms = {status: authority.issue_platform(status, now=ISSUED) for status in STATUSES}
    mrenclave = measure_enclave({"bin/app": b"\x7fELF app"}, {"entrypoint": "bin/app"})
    return SimulatedWorld(authority, platforms, EnclaveSigner.generate(), mrenclave)
