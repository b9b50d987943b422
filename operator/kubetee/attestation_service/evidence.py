"""Quote verification for the service: the DCAP verifier, its collateral, and the platform
binding to the pod's node.

The service holds only a root certificate. Collateral comes, per platform family
(FMSPC) and PCK CA type named in the quote's PCK certificate, from a PCCS over the v4
HTTP API (:mod:`.pccs`: Intel's PCCS for hardware, ``kubetee pcs serve`` for the
simulator), or from a nine-field file. A genuine quote attests a pod only if its PCK
certificate is the platform the PCS registered for the node the pod runs on
(:mod:`kubetee.pcs.registry`): a quote obtained on node A does not attest a pod on B.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.pck_extension import SGX_EXTENSION_OID, PckExtensionError
from enclave_runtime.sgx.quote import Quote
from kubetee.attestation import certificates as certs
from kubetee.attestation import content_cache
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import CertificateChainInvalidError
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation.verifier import QuoteVerifier, read_quote
from kubetee.attestation_service.errors import (
    BackendUnavailableError,
    PlatformMismatchError,
    PlatformNotRegisteredError,
)
from kubetee.attestation_service.workloads import Workload
from kubetee.pcs.registry import PlatformRegistry, RegistryUnavailableError
from kubetee.pcs.stores import pck_ca_type


class CollateralSource(Protocol):
    async def collateral_for(self, fmspc: bytes, ca: str, now: datetime) -> Collateral:
        """Collateral for platforms of family ``fmspc`` certified by PCK CA ``ca``."""
        ...


class FileCollateral:
    """Collateral from a nine-field JSON file (one FMSPC), re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._current: Collateral | None = None

    async def collateral_for(self, fmspc: bytes, ca: str, now: datetime) -> Collateral:
        del fmspc, ca, now  # the verifier reports a file for another family or CA
        return await asyncio.to_thread(self._load)

    def _load(self) -> Collateral:
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._current is None or stamp != self._stamp:
                self._current = Collateral.from_dict(json.loads(self._path.read_text()))
                self._stamp = stamp
            return self._current


@dataclass(frozen=True, slots=True)
class QuotedPlatform:
    """What a quote says about its platform, before anything is verified."""

    fmspc: bytes
    ca: str


_PLATFORMS_CACHED = 256
_SGX_EXTENSION = x509.ObjectIdentifier(SGX_EXTENSION_OID)
_platforms: OrderedDict[tuple[bytes, bytes], QuotedPlatform] = OrderedDict()
_platforms_lock = threading.Lock()


def quoted_platform(quote: bytes | Quote, root_ca_der: bytes) -> QuotedPlatform:
    """The FMSPC and PCK CA type of a quote's platform, to fetch the right collateral (the
    verification then names its PPID and PCK key, from the chain it verified).

    Only for a PCK chain that ends at the pinned root with valid signatures, so a forged
    chain never makes the service fetch collateral for a family of its choosing. Cached by
    the chain (a platform quotes with the same one each time): reading it costs
    milliseconds.
    """
    parsed = quote if isinstance(quote, Quote) else read_quote(quote)
    # Both parts hash once per object: the verifier's root, and the chain of the quote's
    # one reading.
    key = (root_ca_der, parsed.certification_data)
    with _platforms_lock:
        cached = _platforms.get(key)
    if cached is not None:
        return cached
    platform = _read_platform(parsed.certification_data, root_ca_der)
    with _platforms_lock:
        _platforms[key] = platform
        while len(_platforms) > _PLATFORMS_CACHED:
            _platforms.popitem(last=False)
    return platform


def _read_platform(certification_data: bytes, root_ca_der: bytes) -> QuotedPlatform:
    untrusted = CertificateChainInvalidError(
        "the quote's PCK certificate chain is not a PCK certificate, a PCK Processor or "
        "Platform CA and the trusted root, each signed by the next",
        code="PCK_CHAIN_INVALID",
    )
    try:
        chain = x509.load_pem_x509_certificates(certification_data.rstrip(b"\0"))
        if len(chain) != 3:
            raise untrusted
        pck, ca, root = chain
        certs.check_pinned_root(root, root_ca_der, "the quote's PCK certificate chain")
        certs.check_issued_by(ca, root, "the PCK CA certificate", code="PCK_CHAIN_INVALID")
        certs.check_issued_by(pck, ca, "the PCK certificate", code="PCK_CHAIN_INVALID")
        # The FMSPC alone: the verification names the PPID and key from the chain it
        # verifies, and reads the extension from the same content cache, so its ASN.1
        # is decoded once.
        extension = pck.extensions.get_extension_for_oid(_SGX_EXTENSION).value
        fmspc = content_cache.sgx_extension(extension.public_bytes()).fmspc
        return QuotedPlatform(fmspc, pck_ca_type(ca))
    except CertificateChainInvalidError:
        raise
    except (
        ValueError,
        TypeError,
        x509.ExtensionNotFound,
        PckExtensionError,
        UnsupportedAlgorithm,
    ):
        raise untrusted from None


class DcapEvidenceVerifier:
    """Verifies SGX quotes against one pinned root CA and the collateral of their platform
    family; the result names the platform (PPID, PCK key) for :class:`RegisteredPlatforms`."""

    def __init__(self, root_ca_der: bytes, collateral: CollateralSource) -> None:
        self._verifier = QuoteVerifier(root_ca_der)
        self._root_ca_der = bytes(root_ca_der)
        self.collateral = collateral

    async def verify(self, quote: bytes, now: datetime) -> VerifiedQuote:
        parsed = read_quote(quote)  # once, for the platform and the verification
        platform = quoted_platform(parsed, self._root_ca_der)
        collateral = await self.collateral.collateral_for(platform.fmspc, platform.ca, now)
        # The result names the platform's PPID and PCK key, as the verified chain states them.
        return self._verifier.verify(quote, collateral, now=now, parsed=parsed)

    @classmethod
    def for_simulator(cls, authority_dir: Path) -> DcapEvidenceVerifier:
        """Trust a simulated authority in-process: for tests and benchmarks only, since it
        needs the authority's keys (the service itself gets collateral from a PCCS)."""
        from kubetee.pcs.inprocess import InProcessCollateral  # noqa: PLC0415 - tests only

        authority = SimulatedAuthority.load(authority_dir)
        return cls(authority.root_ca_der, InProcessCollateral(authority))


class RegisteredPlatforms:
    """The service's platform check: verified evidence attests a pod only if it comes from
    the platform the PCS registered for the node the pod runs on."""

    def __init__(self, registry: PlatformRegistry) -> None:
        self._registry = registry

    async def check(self, workload: Workload, verified: VerifiedQuote) -> None:
        node = workload.node_name
        quoted = (verified.ppid, verified.pck_key_sha256, verified.fmspc)
        try:
            record = await self._registry.platform_of(node)
            if record is None or record.differs_from(*quoted) is not None:
                # The node may have registered a new platform since the cached read.
                record = await self._registry.platform_of(node, fresh=True)
        except RegistryUnavailableError as error:
            raise BackendUnavailableError(str(error)) from None
        if record is None:
            raise PlatformNotRegisteredError(
                f"no SGX platform is registered for node {node}, where the pod runs: its "
                "quoting service has not registered with the PCS"
            )
        difference = record.differs_from(*quoted)
        if difference is not None:
            raise PlatformMismatchError(
                f"the quote comes from another SGX platform than the one registered for node "
                f"{node}, where the pod runs ({difference}): evidence from one node does not "
                "attest a pod on another"
            )
