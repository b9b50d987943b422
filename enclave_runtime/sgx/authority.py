"""A simulated Intel provisioning authority: the SGX PKI and the collateral it signs.

One authority serves a whole cluster. Its private keys belong to one component only,
the simulated PCS (``kubetee pcs serve``): nodes hold their own platform keys and get
their PCK certificate by registering with it, and verifiers fetch its collateral::

    Root CA ──┬── PCK Processor CA ── PCK certificates (SGX extension); signs its PCK CRL
              ├── PCK Platform CA  ── PCK certificates (SGX extension); signs its PCK CRL
              ├── TCB Signing certificate ── signs TCB Info (v3, one per FMSPC) and
              │                              QE Identity (v2)
              └── signs the Root CA CRL

Platforms come in several families (FMSPCs); all share the configured TCB levels.

The TCB levels are configurable; ``issue_platform(tcb_status=...)`` gives a platform
whose PCK certificate matches the first level with that status, so verification
reports exactly that status.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from enclave_runtime.sgx import _pki
from enclave_runtime.sgx.enclave import EnclaveSigner, measure_enclave
from enclave_runtime.sgx.pck_extension import SGX_EXTENSION_OID, SgxExtension
from enclave_runtime.sgx.platform import (
    PlatformIdentity,
    QuotingEnclaveIdentity,
    SimulatedPlatform,
)

CERTIFICATE_LIFETIME = timedelta(days=7 * 365)
ROOT_LIFETIME = timedelta(days=25 * 365)
DEFAULT_COLLATERAL_VALIDITY = timedelta(days=30)
DEFAULT_FMSPC = bytes.fromhex("00906ED50000")
# A second platform family the authority certifies, so a fleet can mix CPU models.
DEFAULT_EXTRA_FMSPCS = (bytes.fromhex("00606A000000"),)
DEFAULT_PCE_ID = bytes(2)
PCK_CA_TYPES = ("processor", "platform")
"""The two PCK CAs of Intel's PKI, by the name the PCS API's ``ca`` parameter uses."""


@dataclass(frozen=True, slots=True)
class TcbLevel:
    """One level of the TCB Info: the minimum SVNs for a status, with its advisories."""

    status: str
    components: tuple[int, ...]
    pcesvn: int
    tcb_date: str
    advisory_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.components) != 16 or not all(0 <= c <= 255 for c in self.components):
            raise ValueError("a TCB level has 16 SGX TCB components of 0..255")

    def to_json(self) -> dict[str, object]:
        level: dict[str, object] = {
            "tcb": {
                "sgxtcbcomponents": [{"svn": svn} for svn in self.components],
                "pcesvn": self.pcesvn,
            },
            "tcbDate": self.tcb_date,
            "tcbStatus": self.status,
        }
        if self.advisory_ids:
            level["advisoryIDs"] = list(self.advisory_ids)
        return level

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TcbLevel:
        tcb = cast(dict[str, Any], data["tcb"])
        advisories = cast(list[str], data.get("advisoryIDs", []))
        return cls(
            status=str(data["tcbStatus"]),
            components=tuple(int(c["svn"]) for c in tcb["sgxtcbcomponents"]),
            pcesvn=int(tcb["pcesvn"]),
            tcb_date=str(data["tcbDate"]),
            advisory_ids=tuple(str(a) for a in advisories),
        )


def _components(*leading: int) -> tuple[int, ...]:
    return leading + (0,) * (16 - len(leading))


# Newest first, as Intel orders them: the first level a platform reaches is its status.
DEFAULT_TCB_LEVELS: tuple[TcbLevel, ...] = (
    TcbLevel("UpToDate", _components(8, 8, 3, 3, 255, 255, 14), 14, "2025-05-14T00:00:00Z"),
    TcbLevel(
        "SWHardeningNeeded",
        _components(7, 7, 3, 3, 255, 255, 12),
        14,
        "2024-11-13T00:00:00Z",
        ("INTEL-SA-00615",),
    ),
    TcbLevel(
        "OutOfDate",
        _components(5, 5, 2, 2, 255, 1, 4),
        13,
        "2023-02-15T00:00:00Z",
        ("INTEL-SA-00828", "INTEL-SA-00615"),
    ),
    TcbLevel(
        "Revoked",
        _components(2, 2, 2, 2, 255, 1),
        5,
        "2018-01-04T00:00:00Z",
        ("INTEL-SA-00233",),
    ),
)
# (minimum QE ISV SVN, status, advisories), newest first.
DEFAULT_QE_TCB_LEVELS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (8, "UpToDate", ()),
    (6, "OutOfDate", ("INTEL-SA-00615",)),
)


@dataclass(slots=True)
class AuthoritySettings:
    """The public, persisted configuration of an authority."""

    fmspc: bytes
    pce_id: bytes
    tcb_levels: tuple[TcbLevel, ...]
    quoting_enclave: QuotingEnclaveIdentity
    qe_tcb_levels: tuple[tuple[int, str, tuple[str, ...]], ...] = DEFAULT_QE_TCB_LEVELS
    tcb_evaluation_data_number: int = 17
    collateral_validity_seconds: int = int(DEFAULT_COLLATERAL_VALIDITY.total_seconds())
    revoked_pck_serials: list[int] = field(default_factory=list)
    extra_fmspcs: tuple[bytes, ...] = DEFAULT_EXTRA_FMSPCS
    # A family's own levels once a TCB evaluation was published for it alone
    # (``kubetee pcs publish-tcb``); the others keep ``tcb_levels``.
    family_tcb_levels: dict[bytes, tuple[TcbLevel, ...]] = field(default_factory=dict)

    @property
    def fmspcs(self) -> tuple[bytes, ...]:
        """Every platform family this authority certifies, the first one the default."""
        return (self.fmspc, *(f for f in self.extra_fmspcs if f != self.fmspc))

    def levels_for(self, fmspc: bytes) -> tuple[TcbLevel, ...]:
        """The TCB levels published for platforms of family ``fmspc``."""
        return self.family_tcb_levels.get(fmspc, self.tcb_levels)

    def to_json(self) -> dict[str, object]:
        return {
            "fmspc": self.fmspc.hex().upper(),
            "extra_fmspcs": [fmspc.hex().upper() for fmspc in self.extra_fmspcs],
            "pce_id": self.pce_id.hex().upper(),
            "tcb_levels": [level.to_json() for level in self.tcb_levels],
            "quoting_enclave": self.quoting_enclave.to_json(),
            "qe_tcb_levels": [
                {"isvsvn": svn, "status": status, "advisory_ids": list(advisories)}
                for svn, status, advisories in self.qe_tcb_levels
            ],
            "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
            "collateral_validity_seconds": self.collateral_validity_seconds,
            "revoked_pck_serials": [str(serial) for serial in self.revoked_pck_serials],
            "family_tcb_levels": {
                fmspc.hex().upper(): [level.to_json() for level in levels]
                for fmspc, levels in self.family_tcb_levels.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AuthoritySettings:
        # Our own file, written by ``to_json``: shapes are trusted, values converted.
        levels = cast(list[dict[str, object]], data["tcb_levels"])
        qe_levels = cast(list[dict[str, Any]], data["qe_tcb_levels"])
        revoked = cast(list[str], data["revoked_pck_serials"])
        qe = cast(dict[str, object], data["quoting_enclave"])
        extra = cast(list[str], data.get("extra_fmspcs", []))
        families = cast(dict[str, list[dict[str, object]]], data.get("family_tcb_levels", {}))
        return cls(
            fmspc=bytes.fromhex(str(data["fmspc"])),
            extra_fmspcs=tuple(bytes.fromhex(fmspc) for fmspc in extra),
            pce_id=bytes.fromhex(str(data["pce_id"])),
            tcb_levels=tuple(TcbLevel.from_json(level) for level in levels),
            quoting_enclave=QuotingEnclaveIdentity.from_json(qe),
            qe_tcb_levels=tuple(
                (int(q["isvsvn"]), str(q["status"]), tuple(q["advisory_ids"])) for q in qe_levels
            ),
            tcb_evaluation_data_number=int(str(data["tcb_evaluation_data_number"])),
            collateral_validity_seconds=int(str(data["collateral_validity_seconds"])),
            revoked_pck_serials=[int(serial) for serial in revoked],
            family_tcb_levels={
                bytes.fromhex(fmspc): tuple(TcbLevel.from_json(level) for level in family)
                for fmspc, family in families.items()
            },
        )


_SETTINGS_FILE = "authority.json"
_KEYS = ("root_ca", "pck_ca", "pck_platform_ca", "tcb_signing")
# The certificate (and key) name of each PCK CA type.
_PCK_CA = {"processor": "pck_ca", "platform": "pck_platform_ca"}
_CA_SUBJECTS = {
    "pck_ca": "KubeTEE Simulated SGX PCK Processor CA",
    "pck_platform_ca": "KubeTEE Simulated SGX PCK Platform CA",
}


class SimulatedAuthority:
    """The simulated Intel PCS: issues platforms and signs collateral for them."""

    def __init__(
        self,
        *,
        settings: AuthoritySettings,
        keys: dict[str, ec.EllipticCurvePrivateKey],
        certificates: dict[str, x509.Certificate],
    ) -> None:
        missing = [name for name in _KEYS if name not in keys or name not in certificates]
        if missing:
            raise ValueError(f"authority lacks keys or certificates for {missing}")
        self.settings = settings
        self._keys = keys
        self.certificates = certificates

    @classmethod
    def generate(
        cls,
        *,
        fmspc: bytes = DEFAULT_FMSPC,
        pce_id: bytes = DEFAULT_PCE_ID,
        tcb_levels: Sequence[TcbLevel] = DEFAULT_TCB_LEVELS,
        now: datetime | None = None,
    ) -> SimulatedAuthority:
        """A new authority with fresh keys, a self-signed root and its intermediates."""
        if len(fmspc) != 6 or len(pce_id) != 2:
            raise ValueError("FMSPC is 6 bytes and PCE-ID 2 bytes")
        start = (now or _pki.utc_now()) - _pki.CLOCK_SKEW
        keys = {name: _pki.generate_key() for name in _KEYS}
        root = _pki.issue_certificate(
            subject=_pki.name("KubeTEE Simulated SGX Root CA"),
            public_key=keys["root_ca"].public_key(),
            issuer=None,
            issuer_key=keys["root_ca"],
            not_before=start,
            not_after=start + ROOT_LIFETIME,
            is_ca=True,
            ca_path_length=1,
            crl_name="root",
        )
        pck_cas = {name: _issue_pck_ca(name, keys, root, start) for name in _CA_SUBJECTS}
        tcb_signing = _pki.issue_certificate(
            subject=_pki.name("KubeTEE Simulated SGX TCB Signing"),
            public_key=keys["tcb_signing"].public_key(),
            issuer=root,
            issuer_key=keys["root_ca"],
            not_before=start,
            not_after=start + CERTIFICATE_LIFETIME,
            crl_name="root",
        )
        # The QE's signing key stays with its (simulated) vendor; only its identity is kept.
        qe_signer = EnclaveSigner.generate()
        quoting_enclave = QuotingEnclaveIdentity(
            mrenclave=measure_enclave({"libsgx_qe3.signed.so": b"KubeTEE simulated QE"}, {}),
            mrsigner=qe_signer.mrsigner,
        )
        settings = AuthoritySettings(
            fmspc=fmspc,
            pce_id=pce_id,
            tcb_levels=tuple(tcb_levels),
            quoting_enclave=quoting_enclave,
        )
        return cls(
            settings=settings,
            keys=keys,
            certificates={"root_ca": root, **pck_cas, "tcb_signing": tcb_signing},
        )

    @property
    def root_ca_der(self) -> bytes:
        return self.certificates["root_ca"].public_bytes(serialization.Encoding.DER)

    def save(self, directory: Path | str) -> None:
        """Write settings, certificates and keys (mode 0600) to ``directory``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / _SETTINGS_FILE).write_text(json.dumps(self.settings.to_json(), indent=2) + "\n")
        for name in _KEYS:
            (path / f"{name}.pem").write_bytes(_pki.pem(self.certificates[name]))
            _pki.write_secret(path / f"{name}.key.pem", _pki.private_pem(self._keys[name]))
        (path / "root_ca.der").write_bytes(self.root_ca_der)

    @classmethod
    def load(cls, directory: Path | str) -> SimulatedAuthority:
        path = Path(directory)
        settings = AuthoritySettings.from_json(json.loads((path / _SETTINGS_FILE).read_text()))
        present = [name for name in _KEYS if (path / f"{name}.key.pem").exists()]
        keys = {
            name: _pki.load_private_key((path / f"{name}.key.pem").read_bytes()) for name in present
        }
        certificates = {
            name: x509.load_pem_x509_certificate((path / f"{name}.pem").read_bytes())
            for name in present
        }
        upgraded = "pck_platform_ca" not in keys and "root_ca" in keys
        if upgraded:
            # An authority saved before it had a Platform CA gets one from its own root.
            keys["pck_platform_ca"] = _pki.generate_key()
            certificates["pck_platform_ca"] = _issue_pck_ca(
                "pck_platform_ca", keys, certificates["root_ca"], _pki.utc_now() - _pki.CLOCK_SKEW
            )
        authority = cls(settings=settings, keys=keys, certificates=certificates)
        if upgraded and os.access(path, os.W_OK):
            authority.save(path)
        return authority

    def pck_ca_certificate(self, ca: str) -> x509.Certificate:
        """The PCK CA certificate of a CA type (``processor`` or ``platform``)."""
        return self.certificates[_pck_ca_name(ca)]

    def level_for(self, tcb_status: str, fmspc: bytes | None = None) -> TcbLevel:
        levels = self.settings.levels_for(fmspc or self.settings.fmspc)
        return tcb_level_for(tcb_status, levels)

    def issue_platform(
        self,
        tcb_status: str = "UpToDate",
        *,
        now: datetime | None = None,
        fmspc: bytes | None = None,
        ca: str = "processor",
    ) -> SimulatedPlatform:
        """A new platform (own PPID, PCK key and attestation key) at the given TCB status.

        Keys and certificate in one step, for tests and benchmarks; a node makes its own
        keys (:func:`new_platform_identity`) and registers them with the PCS instead.
        """
        family = fmspc or self.settings.fmspc
        identity = new_platform_identity(
            tcb_status,
            fmspc=family,
            ca=ca,
            pce_id=self.settings.pce_id,
            levels=self.settings.levels_for(family),
        )
        pck_key = _pki.generate_key()
        return SimulatedPlatform(
            identity=identity,
            quoting_enclave=self.settings.quoting_enclave,
            pck_key=pck_key,
            pck_chain=self.issue_pck_chain(identity, pck_key.public_key(), now=now),
            attestation_key=_pki.generate_key(),
        )

    def issue_pck_chain(
        self,
        identity: PlatformIdentity,
        pck_public_key: ec.EllipticCurvePublicKey,
        *,
        now: datetime | None = None,
    ) -> list[x509.Certificate]:
        """Certify a platform's PCK key: its PCK certificate, the issuing CA and the root.

        Raises ``ValueError`` for a family (FMSPC), PCE-ID or CA type this authority does
        not certify.
        """
        if identity.fmspc not in self.settings.fmspcs:
            known = ", ".join(f.hex().upper() for f in self.settings.fmspcs)
            raise ValueError(
                f"FMSPC {identity.fmspc.hex().upper()} is not a platform family of this "
                f"authority ({known})"
            )
        if identity.pce_id != self.settings.pce_id:
            raise ValueError(f"PCE-ID {identity.pce_id.hex()} is not this authority's")
        ca_name = _pck_ca_name(identity.pck_ca_type)
        extension = SgxExtension(
            ppid=identity.ppid,
            tcb_components=tuple(identity.cpusvn),
            pcesvn=identity.pcesvn,
            cpusvn=identity.cpusvn,
            pce_id=identity.pce_id,
            fmspc=identity.fmspc,
        )
        start = (now or _pki.utc_now()) - _pki.CLOCK_SKEW
        pck_certificate = _pki.issue_certificate(
            subject=_pki.name("KubeTEE Simulated SGX PCK Certificate"),
            public_key=pck_public_key,
            issuer=self.certificates[ca_name],
            issuer_key=self._keys[ca_name],
            not_before=start,
            not_after=start + CERTIFICATE_LIFETIME,
            crl_name=f"pck-{identity.pck_ca_type}",
            extra=[
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(SGX_EXTENSION_OID), extension.to_der()
                )
            ],
        )
        return [pck_certificate, self.certificates[ca_name], self.certificates["root_ca"]]

    def revoke(self, platform: SimulatedPlatform) -> None:
        """Put the platform's PCK certificate on the PCK CRL of future collateral."""
        serial = platform.pck_certificate.serial_number
        if serial not in self.settings.revoked_pck_serials:
            self.settings.revoked_pck_serials.append(serial)

    def collateral(
        self, now: datetime | None = None, *, fmspc: bytes | None = None, ca: str = "processor"
    ) -> dict[str, str]:
        """Collateral issued at ``now``, in the nine-field JSON form of DCAP tooling,
        for the platforms of one family (default: the first) and PCK CA type."""
        tcb_info, tcb_signature, signing_chain = self.signed_tcb_info(fmspc, now)
        qe_identity, qe_signature, _ = self.signed_qe_identity(now)
        pck_crl, pck_crl_chain = self.pck_crl(ca, now)
        return {
            "pck_crl_issuer_chain": pck_crl_chain,
            "root_ca_crl": self.root_ca_crl(now).hex(),
            "pck_crl": pck_crl.hex(),
            "tcb_info_issuer_chain": signing_chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": tcb_signature.hex(),
            "qe_identity_issuer_chain": signing_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": qe_signature.hex(),
        }

    def _validity(self, now: datetime | None) -> tuple[datetime, datetime]:
        issued = (now or _pki.utc_now()).replace(microsecond=0)
        return issued, issued + timedelta(seconds=self.settings.collateral_validity_seconds)

    def _signing_chain(self) -> str:
        return (
            _pki.pem(self.certificates["tcb_signing"]) + _pki.pem(self.certificates["root_ca"])
        ).decode()

    def signed_tcb_info(
        self, fmspc: bytes | None = None, now: datetime | None = None
    ) -> tuple[str, bytes, str]:
        """(exact signed TCB Info text, its r||s signature, issuer chain PEM) of a family."""
        family = fmspc or self.settings.fmspc
        if family not in self.settings.fmspcs:
            raise ValueError(f"FMSPC {family.hex().upper()} is not a family of this authority")
        text = _compact_json(self._tcb_info(family, *self._validity(now)))
        return text, _pki.sign_raw(self._keys["tcb_signing"], text.encode()), self._signing_chain()

    def signed_qe_identity(self, now: datetime | None = None) -> tuple[str, bytes, str]:
        """(exact signed QE Identity text, its r||s signature, issuer chain PEM)."""
        text = _compact_json(self._qe_identity(*self._validity(now)))
        return text, _pki.sign_raw(self._keys["tcb_signing"], text.encode()), self._signing_chain()

    def pck_crl(self, ca: str = "processor", now: datetime | None = None) -> tuple[bytes, str]:
        """(DER of the PCK CRL of one CA type, its issuer chain PEM)."""
        name = _pck_ca_name(ca)
        issued, next_update = self._validity(now)
        issuer = self.certificates[name]
        crl = _pki.issue_crl(
            issuer=issuer,
            issuer_key=self._keys[name],
            revoked_serials=self.settings.revoked_pck_serials,
            this_update=issued,
            next_update=next_update,
            number=1 + len(self.settings.revoked_pck_serials),
        )
        chain = (_pki.pem(issuer) + _pki.pem(self.certificates["root_ca"])).decode()
        return crl.public_bytes(serialization.Encoding.DER), chain

    def root_ca_crl(self, now: datetime | None = None) -> bytes:
        """DER of the root CA's CRL (no intermediate is revoked)."""
        issued, next_update = self._validity(now)
        crl = _pki.issue_crl(
            issuer=self.certificates["root_ca"],
            issuer_key=self._keys["root_ca"],
            revoked_serials=[],
            this_update=issued,
            next_update=next_update,
            number=1,
        )
        return crl.public_bytes(serialization.Encoding.DER)

    def _tcb_info(self, fmspc: bytes, issued: datetime, next_update: datetime) -> dict[str, object]:
        return {
            "id": "SGX",
            "version": 3,
            "issueDate": _pki.intel_time(issued),
            "nextUpdate": _pki.intel_time(next_update),
            "fmspc": fmspc.hex().upper(),
            "pceId": self.settings.pce_id.hex().upper(),
            "tcbType": 0,
            "tcbEvaluationDataNumber": self.settings.tcb_evaluation_data_number,
            "tcbLevels": [level.to_json() for level in self.settings.levels_for(fmspc)],
        }

    def _qe_identity(self, issued: datetime, next_update: datetime) -> dict[str, object]:
        qe = self.settings.quoting_enclave
        levels: list[dict[str, object]] = []
        for svn, status, advisories in self.settings.qe_tcb_levels:
            level: dict[str, object] = {
                "tcb": {"isvsvn": svn},
                "tcbDate": "2024-03-13T00:00:00Z",
                "tcbStatus": status,
            }
            if advisories:
                level["advisoryIDs"] = list(advisories)
            levels.append(level)
        return {
            "id": "QE",
            "version": 2,
            "issueDate": _pki.intel_time(issued),
            "nextUpdate": _pki.intel_time(next_update),
            "tcbEvaluationDataNumber": self.settings.tcb_evaluation_data_number,
            "miscselect": qe.misc_select.to_bytes(4, "little").hex().upper(),
            "miscselectMask": "FFFFFFFF",
            # MODE64BIT is masked out, as in Intel's QE Identity.
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": qe.mrsigner.hex().upper(),
            "isvprodid": qe.isv_prod_id,
            "tcbLevels": levels,
        }


def _compact_json(document: dict[str, object]) -> str:
    return json.dumps(document, separators=(",", ":"))


def _pck_ca_name(ca: str) -> str:
    try:
        return _PCK_CA[ca]
    except KeyError:
        raise ValueError(f"PCK CA type {ca!r} is neither 'processor' nor 'platform'") from None


def _issue_pck_ca(
    name: str,
    keys: dict[str, ec.EllipticCurvePrivateKey],
    root: x509.Certificate,
    start: datetime,
) -> x509.Certificate:
    return _pki.issue_certificate(
        subject=_pki.name(_CA_SUBJECTS[name]),
        public_key=keys[name].public_key(),
        issuer=root,
        issuer_key=keys["root_ca"],
        not_before=start,
        not_after=start + CERTIFICATE_LIFETIME,
        is_ca=True,
        ca_path_length=0,
        crl_name="root",
    )


def tcb_level_for(tcb_status: str, levels: Sequence[TcbLevel] = DEFAULT_TCB_LEVELS) -> TcbLevel:
    """The first (newest) of ``levels`` with ``tcb_status``."""
    for level in levels:
        if level.status == tcb_status:
            return level
    known = sorted({level.status for level in levels})
    raise ValueError(f"no TCB level has status {tcb_status!r}; configured: {known}")


def new_platform_identity(
    tcb_status: str = "UpToDate",
    *,
    fmspc: bytes = DEFAULT_FMSPC,
    ca: str = "processor",
    pce_id: bytes = DEFAULT_PCE_ID,
    levels: Sequence[TcbLevel] = DEFAULT_TCB_LEVELS,
) -> PlatformIdentity:
    """What a simulated CPU is: fresh PPID and QE ID, its family, PCK CA type and the
    SVNs of the (published) TCB level with ``tcb_status``."""
    _pck_ca_name(ca)
    if len(fmspc) != 6:
        raise ValueError("FMSPC is 6 bytes")
    level = tcb_level_for(tcb_status, levels)
    return PlatformIdentity(
        ppid=secrets.token_bytes(16),
        cpusvn=bytes(level.components),
        pcesvn=level.pcesvn,
        pce_id=pce_id,
        fmspc=fmspc,
        qe_id=secrets.token_bytes(16),
        pck_ca_type=ca,
    )
