"""One simulated SGX machine: its PCK certificate and key, and its Quoting Enclave.

A node makes its platform's keys itself (:class:`PlatformKeys`, as a CPU has its own)
and gets the PCK certificate for them by registering with the cluster's simulated PCS;
the registered platform (:class:`SimulatedPlatform`) lives on that node and turns an
enclave's report body into a quote in Intel's ECDSA v3 format:

1. the report body gets the platform's CPUSVN, as EREPORT fills it in;
2. the Quoting Enclave's own report binds its attestation key:
   ``report_data = SHA-256(attestation key || QE auth data) || 32 zero bytes``,
   and is signed by the platform's PCK key (as the PCE does);
3. the attestation key signs the quote header and the enclave's report body;
4. the PCK certificate chain travels as certification data type 5.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from enclave_runtime.sgx import _pki
from enclave_runtime.sgx.quote import (
    CERTIFICATION_DATA_PCK_CHAIN,
    HEADER_SIZE,
    ISV_SIGNED_SIZE,
    SIGNATURE_SIZE,
    Quote,
    QuoteHeader,
    ReportBody,
)

_U32 = struct.Struct("<I")
_CPU_SVN_SIZE = 16  # the first field of a report body

# Intel's QE writes a 32-byte auth data of 0..31; any value is bound the same way.
QE_AUTH_DATA = bytes(range(32))


@dataclass(frozen=True, slots=True)
class QuotingEnclaveIdentity:
    """The identity of the simulated Quoting Enclave, published as the QE Identity."""

    mrenclave: bytes
    mrsigner: bytes
    isv_prod_id: int = 1
    isv_svn: int = 8
    misc_select: int = 0
    # INIT | MODE64BIT | PROVISIONKEY, XFRM x87/SSE/AVX..., as Intel's QE reports them.
    attributes: bytes = bytes.fromhex("1500000000000000e700000000000000")

    def to_json(self) -> dict[str, object]:
        return {
            "mrenclave": self.mrenclave.hex(),
            "mrsigner": self.mrsigner.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "misc_select": self.misc_select,
            "attributes": self.attributes.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> QuotingEnclaveIdentity:
        return cls(
            mrenclave=bytes.fromhex(str(data["mrenclave"])),
            mrsigner=bytes.fromhex(str(data["mrsigner"])),
            isv_prod_id=int(str(data["isv_prod_id"])),
            isv_svn=int(str(data["isv_svn"])),
            misc_select=int(str(data["misc_select"])),
            attributes=bytes.fromhex(str(data["attributes"])),
        )


@dataclass(frozen=True, slots=True)
class PlatformIdentity:
    """What the PCK certificate states about the platform, kept alongside the keys."""

    ppid: bytes
    cpusvn: bytes
    pcesvn: int
    pce_id: bytes
    fmspc: bytes
    qe_id: bytes
    # Which of Intel's PCK CAs certifies the platform: "processor" or "platform".
    pck_ca_type: str = "processor"

    def to_json(self) -> dict[str, object]:
        return {
            key: value.hex() if isinstance(value, bytes) else value
            for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> PlatformIdentity:
        return cls(
            ppid=bytes.fromhex(str(data["ppid"])),
            cpusvn=bytes.fromhex(str(data["cpusvn"])),
            pcesvn=int(str(data["pcesvn"])),
            pce_id=bytes.fromhex(str(data["pce_id"])),
            fmspc=bytes.fromhex(str(data["fmspc"])),
            qe_id=bytes.fromhex(str(data["qe_id"])),
            pck_ca_type=str(data.get("pck_ca_type", "processor")),
        )


_IDENTITY_FILE = "platform.json"
_PCK_KEY_FILE = "pck.key.pem"
_ATTESTATION_KEY_FILE = "attestation.key.pem"
_CHAIN_FILE = "pck_chain.pem"
PCK_CHAIN_FILE = _CHAIN_FILE
"""The registered platform's PCK certificate chain, written last when it registers."""


class PlatformKeys:
    """A platform before registration: its identity and private keys, no certificate."""

    def __init__(
        self,
        *,
        identity: PlatformIdentity,
        pck_key: ec.EllipticCurvePrivateKey,
        attestation_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        self.identity = identity
        self.pck_key = pck_key
        self.attestation_key = attestation_key

    @classmethod
    def generate(cls, identity: PlatformIdentity) -> PlatformKeys:
        return cls(
            identity=identity, pck_key=_pki.generate_key(), attestation_key=_pki.generate_key()
        )

    def save(self, directory: Path | str) -> None:
        """Write identity and keys (mode 0600); a registered platform adds its chain."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        _pki.write_secret(path / _PCK_KEY_FILE, _pki.private_pem(self.pck_key))
        _pki.write_secret(path / _ATTESTATION_KEY_FILE, _pki.private_pem(self.attestation_key))
        document = {"identity": self.identity.to_json()}
        (path / _IDENTITY_FILE).write_text(json.dumps(document, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path | str) -> PlatformKeys:
        path = Path(directory)
        document = json.loads((path / _IDENTITY_FILE).read_text())
        return cls(
            identity=PlatformIdentity.from_json(document["identity"]),
            pck_key=_pki.load_private_key((path / _PCK_KEY_FILE).read_bytes()),
            attestation_key=_pki.load_private_key((path / _ATTESTATION_KEY_FILE).read_bytes()),
        )

    def registered(
        self, pck_chain: list[x509.Certificate], quoting_enclave: QuotingEnclaveIdentity
    ) -> SimulatedPlatform:
        """The platform with the PCK chain its registration returned."""
        return SimulatedPlatform(
            identity=self.identity,
            quoting_enclave=quoting_enclave,
            pck_key=self.pck_key,
            pck_chain=pck_chain,
            attestation_key=self.attestation_key,
        )


def is_registered(directory: Path | str) -> bool:
    """Whether a platform directory holds a PCK certificate chain."""
    return (Path(directory) / _CHAIN_FILE).exists()


class SimulatedPlatform:
    """A simulated SGX platform that quotes enclave reports."""

    def __init__(
        self,
        *,
        identity: PlatformIdentity,
        quoting_enclave: QuotingEnclaveIdentity,
        pck_key: ec.EllipticCurvePrivateKey,
        pck_chain: list[x509.Certificate],
        attestation_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        if len(pck_chain) != 3:
            raise ValueError("a PCK chain is leaf, PCK CA and root: three certificates")
        if pck_chain[0].public_key() != pck_key.public_key():
            raise ValueError("the PCK certificate does not certify the PCK key")
        self.identity = identity
        self.quoting_enclave = quoting_enclave
        self._pck_key = pck_key
        self.pck_chain = list(pck_chain)
        self._attestation_key = attestation_key
        self._attestation_public = _pki.raw_public_key(attestation_key.public_key())
        # PEM chain with the trailing NUL that Intel's QE counts in the size.
        self._certification_data = b"".join(_pki.pem(cert) for cert in pck_chain) + b"\0"
        self._qe_report, self._qe_report_signature = self._quoting_enclave_report()
        # What every quote of this platform shares, serialized once: the header, and the
        # signature data after the ISV signature (a quote adds its body and signature).
        template = self.assemble(ReportBody(), bytes(SIGNATURE_SIZE))
        self._header_bytes = template[:HEADER_SIZE]
        self._cpu_svn = template[HEADER_SIZE : HEADER_SIZE + _CPU_SVN_SIZE]  # as packed
        self._signature_data_tail = template[ISV_SIGNED_SIZE + 4 + SIGNATURE_SIZE :]
        self._signature_data_size = _U32.pack(SIGNATURE_SIZE + len(self._signature_data_tail))

    @property
    def pck_certificate(self) -> x509.Certificate:
        return self.pck_chain[0]

    def _quoting_enclave_report(self) -> tuple[ReportBody, bytes]:
        qe = self.quoting_enclave
        binding = hashlib.sha256(self._attestation_public + QE_AUTH_DATA).digest()
        report = ReportBody(
            cpu_svn=self.identity.cpusvn,
            misc_select=qe.misc_select,
            attributes=qe.attributes,
            mrenclave=qe.mrenclave,
            mrsigner=qe.mrsigner,
            isv_prod_id=qe.isv_prod_id,
            isv_svn=qe.isv_svn,
            report_data=binding + bytes(32),
        )
        return report, _pki.sign_raw(self._pck_key, report.to_bytes())

    def quote(self, report_body: ReportBody) -> bytes:
        """Quote an enclave's report body: the bytes of an SGX ECDSA v3 quote."""
        body = report_body.to_bytes()
        # The platform's CPUSVN, as EREPORT fills it in: the body's first field.
        signed = self._header_bytes + self._cpu_svn + body[_CPU_SVN_SIZE:]
        signature = _pki.sign_raw(self._attestation_key, signed)
        return signed + self._signature_data_size + signature + self._signature_data_tail

    def assemble(self, report_body: ReportBody, signature: bytes) -> bytes:
        """The quote of ``report_body`` with ``signature``, field by field (:meth:`quote`
        makes the same bytes from the parts that do not change, and signs them)."""
        return Quote(
            header=QuoteHeader(
                qe_svn=self.quoting_enclave.isv_svn,
                pce_svn=self.identity.pcesvn,
                user_data=self.identity.qe_id + bytes(4),
            ),
            report_body=dataclasses.replace(report_body, cpu_svn=self.identity.cpusvn),
            signature=signature,
            attestation_key=self._attestation_public,
            qe_report=self._qe_report,
            qe_report_signature=self._qe_report_signature,
            qe_auth_data=QE_AUTH_DATA,
            certification_data_type=CERTIFICATION_DATA_PCK_CHAIN,
            certification_data=self._certification_data,
        ).to_bytes()

    def save(self, directory: Path | str) -> None:
        """Write identity, keys (mode 0600) and PCK chain to ``directory``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        document = {
            "identity": self.identity.to_json(),
            "quoting_enclave": self.quoting_enclave.to_json(),
        }
        (path / _IDENTITY_FILE).write_text(json.dumps(document, indent=2) + "\n")
        _pki.write_secret(path / _PCK_KEY_FILE, _pki.private_pem(self._pck_key))
        _pki.write_secret(path / _ATTESTATION_KEY_FILE, _pki.private_pem(self._attestation_key))
        (path / _CHAIN_FILE).write_bytes(b"".join(_pki.pem(cert) for cert in self.pck_chain))

    @classmethod
    def load(cls, directory: Path | str) -> SimulatedPlatform:
        path = Path(directory)
        document = json.loads((path / _IDENTITY_FILE).read_text())
        return cls(
            identity=PlatformIdentity.from_json(document["identity"]),
            quoting_enclave=QuotingEnclaveIdentity.from_json(document["quoting_enclave"]),
            pck_key=_pki.load_private_key((path / _PCK_KEY_FILE).read_bytes()),
            pck_chain=x509.load_pem_x509_certificates((path / _CHAIN_FILE).read_bytes()),
            attestation_key=_pki.load_private_key((path / _ATTESTATION_KEY_FILE).read_bytes()),
        )
