"""What a successful quote verification establishes about an enclave and its platform."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

# Statuses a platform can have and still produce verifiable evidence; Revoked is terminal.
AcceptableTcbStatus = Literal[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
]
TcbStatus = Literal[AcceptableTcbStatus, "Revoked"]
TCB_STATUSES: tuple[str, ...] = get_args(TcbStatus)
ACCEPTABLE_TCB_STATUSES: tuple[str, ...] = get_args(AcceptableTcbStatus)


@dataclass(frozen=True, slots=True)
class VerifiedQuote:
    """The identity of a genuine enclave and the TCB status of the platform it runs on."""

    tcb_status: str
    advisory_ids: tuple[str, ...]
    mrenclave: bytes
    mrsigner: bytes
    isv_prod_id: int
    isv_svn: int
    debug: bool
    report_data: bytes
    fmspc: bytes
    # The earliest moment at which a certificate, CRL or collateral item used expires.
    valid_until: datetime
    # The lower tcbEvaluationDataNumber of TCB Info and QE Identity (QVL's supplemental
    # "TCB evaluation reference number"): how recent Intel's TCB assessment was.
    tcb_evaluation_data_number: int = 0
    # CONFIGID: what the host launched the enclave with (the init-data digest).
    config_id: bytes = bytes(64)
    # The platform that quoted (its PCK certificate's PPID and the hex SHA-256 of its key's
    # SubjectPublicKeyInfo), which the service compares with the platform registered for
    # the node.
    ppid: bytes = b""
    pck_key_sha256: str = ""

    def to_json(self) -> dict[str, object]:
        """The verification result as the CLI and services report it (bytes as hex)."""
        return {
            "verified": True,
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "mrenclave": self.mrenclave.hex(),
            "mrsigner": self.mrsigner.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "debug": self.debug,
            "report_data": self.report_data.hex(),
            "fmspc": self.fmspc.hex().upper(),
            "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
        }
