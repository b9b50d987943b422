"""Where the PCS's collateral comes from: the simulated authority, or a directory of real files.

:class:`SimulatedStore` signs collateral with the simulated authority's keys, for each
platform family (FMSPC) and both PCK CAs, and renews each item once half of its
validity has passed. :class:`StaticStore` serves real collateral as saved in the
nine-field JSON form of DCAP tooling (one file per platform family, e.g. Intel's sample
collateral), indexed by the FMSPC of its TCB Info and the CA that issued its PCK CRL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar, cast

from cryptography import x509
from cryptography.x509.oid import NameOID

from enclave_runtime.sgx.authority import AuthoritySettings, SimulatedAuthority
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import CollateralInvalidError


class UnknownCollateralError(LookupError):
    """The store has no collateral for this FMSPC or CA type."""


SignedDocument = tuple[str, bytes, str]
"""(the exact signed JSON text, its r||s signature, the issuer chain PEM)."""
SignedCrl = tuple[bytes, str]
"""(DER of a CRL, its issuer chain PEM)."""


class CollateralStore(Protocol):
    def tcb_info(self, fmspc: bytes) -> SignedDocument: ...

    def qe_identity(self) -> SignedDocument: ...

    def pck_crl(self, ca: str) -> SignedCrl: ...

    def root_ca_crl(self) -> bytes: ...


T = TypeVar("T")

# Collateral is stamped this long before it is first served, as Intel's is issued well
# before any verifier fetches it: a verifier that read its clock (in whole seconds) just
# before fetching must not find fresh collateral "not yet valid".
ISSUE_LEAD = timedelta(seconds=60)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SimulatedStore:
    """Collateral the simulated authority signs, renewed at half its validity.

    With ``settings_file`` (the authority's ``authority.json``), a changed file (a TCB
    evaluation published by ``kubetee pcs publish-tcb``) is read again at the next
    request and everything is signed afresh from it.
    """

    def __init__(
        self,
        authority: SimulatedAuthority,
        clock: Callable[[], datetime] = _utc_now,
        settings_file: Path | None = None,
    ) -> None:
        self._authority = authority
        self._clock = clock
        self._renew_after = timedelta(seconds=authority.settings.collateral_validity_seconds / 2)
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, str], tuple[datetime, object]] = {}
        self._settings_file = settings_file
        self._settings_stamp = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        if self._settings_file is None:
            return None
        try:
            stat = self._settings_file.stat()
        except OSError:
            return self._settings_stamp  # keep serving what was read
        return stat.st_mtime_ns, stat.st_ino

    def _reload_if_changed(self) -> None:
        stamp = self._stamp()
        if stamp == self._settings_stamp or self._settings_file is None:
            return
        try:
            settings = AuthoritySettings.from_json(json.loads(self._settings_file.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return  # a half-written or broken file: keep the settings in force
        self._authority.settings = settings
        self._renew_after = timedelta(seconds=settings.collateral_validity_seconds / 2)
        self._issued.clear()
        self._settings_stamp = stamp

    def _cached(self, key: tuple[str, str], issue: Callable[[datetime], T]) -> T:
        now = self._clock()
        with self._lock:
            self._reload_if_changed()
            entry = self._issued.get(key)
            if entry is None or not entry[0] <= now < entry[0] + self._renew_after:
                entry = (now, issue(now - ISSUE_LEAD))
                self._issued[key] = entry
            return cast(T, entry[1])

    def tcb_info(self, fmspc: bytes) -> SignedDocument:
        if fmspc not in self._authority.settings.fmspcs:
            raise UnknownCollateralError(f"no TCB Info for FMSPC {fmspc.hex().upper()}")
        return self._cached(
            ("tcb", fmspc.hex()), lambda now: self._authority.signed_tcb_info(fmspc, now)
        )

    def qe_identity(self) -> SignedDocument:
        return self._cached(("qe", ""), self._authority.signed_qe_identity)

    def pck_crl(self, ca: str) -> SignedCrl:
        if ca not in ("processor", "platform"):
            raise UnknownCollateralError(f"no PCK CRL for CA {ca!r}")
        return self._cached(("pckcrl", ca), lambda now: self._authority.pck_crl(ca, now))

    def root_ca_crl(self) -> bytes:
        return self._cached(("rootcacrl", ""), self._authority.root_ca_crl)


def pck_ca_type(issuer: x509.Certificate) -> str:
    """``processor`` or ``platform``: which PCK CA a certificate is, by its CN as Intel
    names them ("Intel SGX PCK Processor CA", "Intel SGX PCK Platform CA")."""
    names = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    if "Processor" in common_name:
        return "processor"
    if "Platform" in common_name:
        return "platform"
    raise ValueError(f"{common_name!r} is neither a PCK Processor CA nor a PCK Platform CA")


class StaticStore:
    """Real collateral from ``*.json`` files of nine fields; the newest wins per item."""

    def __init__(self, directory: Path) -> None:
        self._tcb: dict[bytes, tuple[str, SignedDocument]] = {}
        self._crl: dict[str, tuple[str, SignedCrl]] = {}
        self._qe: tuple[str, SignedDocument] | None = None
        self._root_crl: tuple[str, bytes] | None = None
        files = sorted(directory.glob("*.json"))
        for path in files:
            self._add(path)
        if self._qe is None or self._root_crl is None:
            raise ValueError(f"{directory} holds no nine-field collateral (*.json)")

    def _add(self, path: Path) -> None:
        try:
            collateral = Collateral.load(path)
            tcb = json.loads(collateral.tcb_info)
            qe = json.loads(collateral.qe_identity)
            fmspc = bytes.fromhex(str(tcb["fmspc"]))
            tcb_issued, qe_issued = str(tcb["issueDate"]), str(qe["issueDate"])
            issuer = x509.load_pem_x509_certificates(collateral.pck_crl_issuer_chain.encode())[0]
            ca = pck_ca_type(issuer)
        except (CollateralInvalidError, ValueError, KeyError, TypeError, IndexError) as error:
            raise ValueError(f"{path} is not usable collateral: {error}") from None
        tcb_document = (
            collateral.tcb_info,
            collateral.tcb_info_signature,
            collateral.tcb_info_issuer_chain,
        )
        if fmspc not in self._tcb or self._tcb[fmspc][0] < tcb_issued:
            self._tcb[fmspc] = (tcb_issued, tcb_document)
        if ca not in self._crl or self._crl[ca][0] < tcb_issued:
            self._crl[ca] = (tcb_issued, (collateral.pck_crl, collateral.pck_crl_issuer_chain))
        if self._qe is None or self._qe[0] < qe_issued:
            qe_document = (
                collateral.qe_identity,
                collateral.qe_identity_signature,
                collateral.qe_identity_issuer_chain,
            )
            self._qe = (qe_issued, qe_document)
        if self._root_crl is None or self._root_crl[0] < tcb_issued:
            self._root_crl = (tcb_issued, collateral.root_ca_crl)

    @property
    def fmspcs(self) -> list[bytes]:
        return sorted(self._tcb)

    def tcb_info(self, fmspc: bytes) -> SignedDocument:
        entry = self._tcb.get(fmspc)
        if entry is None:
            raise UnknownCollateralError(f"no TCB Info for FMSPC {fmspc.hex().upper()}")
        return entry[1]

    def qe_identity(self) -> SignedDocument:
        assert self._qe is not None  # noqa: S101 - checked in __init__
        return self._qe[1]

    def pck_crl(self, ca: str) -> SignedCrl:
        entry = self._crl.get(ca)
        if entry is None:
            raise UnknownCollateralError(f"no PCK CRL for CA {ca!r}")
        return entry[1]

    def root_ca_crl(self) -> bytes:
        assert self._root_crl is not None  # noqa: S101 - checked in __init__
        return self._root_crl[1]
