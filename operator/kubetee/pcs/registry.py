"""Which SGX platform is registered for which node: written by the PCS, read by verifiers.

The registry is one ConfigMap (default ``kubetee-sgx-platforms`` in the PCS's
namespace) with one key per node whose value is a :class:`PlatformRecord` in JSON.
Only the PCS's ServiceAccount may write it (chart RBAC); the attestation service may
only read it. A node's kubelet cannot write ConfigMaps at all, so a compromised node
cannot move its own or another node's registration. A node registering again (a new
platform after a restart) replaces its own record only.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import MISSING, asdict, dataclass
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from enclave_runtime.sgx.pck_extension import SGX_EXTENSION_OID, SgxExtension
from kubetee.attestation.certificates import pck_key_sha256
from kubetee.pcs.stores import pck_ca_type

DEFAULT_REGISTRY = "kubetee-sgx-platforms"
_NOT_FOUND = 404


@dataclass(frozen=True, slots=True)
class PlatformRecord:
    """One node's registered platform: what a quote's PCK certificate must show."""

    node: str
    ppid: str  # hex
    fmspc: str  # upper-case hex
    ca: str  # processor | platform
    pck_key_sha256: str
    pck_serial: str
    registered_at: str
    registered_by: str
    # The TCB its PCK certificate states (16 SGX TCB components as hex, PCESVN): what
    # the node's TCB status is judged by. Empty in records made before they were kept.
    tcb_components: str = ""
    pcesvn: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PlatformRecord | None:
        """A record, or ``None`` when the stored text is not one (never trusted blindly)."""
        try:
            data = json.loads(text)
            return cls(
                **{
                    name: str(data[name] if field.default is MISSING else data.get(name, ""))
                    for name, field in cls.__dataclass_fields__.items()
                }
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def tcb(self) -> tuple[tuple[int, ...], int] | None:
        """(SGX TCB components, PCESVN) of the platform, None when not recorded."""
        try:
            components = tuple(bytes.fromhex(self.tcb_components))
            pcesvn = int(self.pcesvn)
        except ValueError:
            return None
        return (components, pcesvn) if len(components) == 16 else None

    def matches(self, pck_certificate: x509.Certificate) -> str | None:
        """``None`` when ``pck_certificate`` is this platform's, else what differs."""
        ppid, key_sha256, fmspc = platform_of_certificate(pck_certificate)
        return self.differs_from(ppid, key_sha256, fmspc)

    def differs_from(self, ppid: bytes, pck_key_sha256: str, fmspc: bytes) -> str | None:
        """``None`` when a PCK certificate of this PPID, key and FMSPC is this platform's."""
        if ppid.hex() != self.ppid:
            return "its PPID differs"
        if pck_key_sha256 != self.pck_key_sha256:
            return "its PCK key differs"
        if fmspc.hex().upper() != self.fmspc:
            return "its FMSPC differs"
        return None


def platform_of_certificate(pck_certificate: x509.Certificate) -> tuple[bytes, str, bytes]:
    """(PPID, SHA-256 of the PCK key, FMSPC) a PCK certificate states.

    Raises ``ValueError`` (or ``x509.ExtensionNotFound``) for a certificate without them.
    """
    raw = pck_certificate.extensions.get_extension_for_oid(
        x509.ObjectIdentifier(SGX_EXTENSION_OID)
    ).value.public_bytes()
    extension = SgxExtension.from_der(raw)
    key = pck_certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TypeError("a PCK key is an EC key")
    return extension.ppid, pck_key_sha256(key), extension.fmspc


def record_for(
    node: str, pck_certificate: x509.Certificate, issuer: x509.Certificate, registered_by: str
) -> PlatformRecord:
    raw = pck_certificate.extensions.get_extension_for_oid(
        x509.ObjectIdentifier(SGX_EXTENSION_OID)
    ).value.public_bytes()
    extension = SgxExtension.from_der(raw)
    key = pck_certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TypeError("a PCK key is an EC key")
    return PlatformRecord(
        node=node,
        ppid=extension.ppid.hex(),
        fmspc=extension.fmspc.hex().upper(),
        ca=pck_ca_type(issuer),
        pck_key_sha256=pck_key_sha256(key),
        pck_serial=str(pck_certificate.serial_number),
        registered_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        registered_by=registered_by,
        tcb_components=bytes(extension.tcb_components).hex(),
        pcesvn=str(extension.pcesvn),
    )


class PlatformRegistry(Protocol):
    async def platform_of(self, node: str, *, fresh: bool = False) -> PlatformRecord | None:
        """The platform registered for ``node``, ``None`` if there is none."""
        ...


class RegistryUnavailableError(Exception):
    """The registry could not be read or written (Kubernetes API error)."""


class InMemoryRegistry:
    """A registry in a dict, for tests and single-process setups."""

    def __init__(self) -> None:
        self.records: dict[str, PlatformRecord] = {}

    async def platform_of(self, node: str, *, fresh: bool = False) -> PlatformRecord | None:
        del fresh
        return self.records.get(node)

    async def record(self, record: PlatformRecord) -> None:
        self.records[record.node] = record


class ConfigMapRegistry:
    """The registry in a ConfigMap, read-only (writes: :mod:`.registry_writes`); reads are
    cached for ``cache_seconds``."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str = DEFAULT_REGISTRY,
        cache_seconds: float = 5.0,
    ) -> None:
        self._core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._read_at = -1e9
        self._data: dict[str, str] = {}

    async def platform_of(self, node: str, *, fresh: bool = False) -> PlatformRecord | None:
        data = await asyncio.to_thread(self._data_now, fresh)
        text = data.get(node)
        return PlatformRecord.from_json(text) if text is not None else None

    def _data_now(self, fresh: bool) -> dict[str, str]:
        with self._lock:
            if fresh or time.monotonic() - self._read_at > self._cache_seconds:
                self._data = self._read()[1]
                self._read_at = time.monotonic()
            return self._data

    def read(self) -> tuple[str | None, dict[str, str]]:
        """(resourceVersion or None if the ConfigMap does not exist, its data)."""
        return self._read()

    def remember(self, data: dict[str, str]) -> None:
        """Take ``data`` as the current content (after writing it)."""
        with self._lock:
            self._data, self._read_at = data, time.monotonic()

    def _read(self) -> tuple[str | None, dict[str, str]]:
        try:
            config_map = self._core.read_namespaced_config_map(
                self.name, self.namespace, _request_timeout=10
            )
        except ApiException as exc:
            if exc.status == _NOT_FOUND:
                return None, {}
            raise RegistryUnavailableError(
                f"cannot read ConfigMap {self.namespace}/{self.name}: {exc.status} {exc.reason}"
            ) from None
        version = config_map.metadata.resource_version if config_map.metadata else None
        return version, dict(config_map.data or {})


def parse_registry(reference: str, default_namespace: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` or ``NAME`` (in ``default_namespace``)."""
    namespace, _, name = reference.rpartition("/")
    if not name:
        raise ValueError(f"{reference!r} is not NAMESPACE/NAME of a ConfigMap")
    return namespace or default_namespace, name
