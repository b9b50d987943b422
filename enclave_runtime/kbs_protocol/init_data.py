"""The pod's identity as KBS init-data, bound to the quote through SGX CONFIGID.

A replica's runtime launches its enclave with CONFIGID = the init-data digest (as
Trustee's initdata spec binds init-data on SGX, and as its SGX verifier checks it:
digest zero padded to 64 bytes). The init-data is a TOML document (the format
kbs_protocol sends) naming the pod::

    version = "0.1.0"
    algorithm = "sha384"

    [data]
    "kubetee.io/namespace" = "shop"
    "kubetee.io/pod" = "payments-7c9f-x2"
    "kubetee.io/pod-uid" = "0b1c..."

The digest is the ``algorithm`` hash of the body bytes exactly as sent (Trustee's
``Initdata::parse_and_get_digest``). The service attests only the pod named here, so
a quote for one pod cannot be presented for another.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tomllib
from dataclasses import dataclass

from enclave_runtime.kbs_protocol.models import InitData

INIT_DATA_VERSION = "0.1.0"
CONFIG_ID_SIZE = 64
"""Bytes of CONFIGID in an SGX report body."""
FORMATS = ("toml", "json")
ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
NAMESPACE_KEY = "kubetee.io/namespace"
POD_KEY = "kubetee.io/pod"
POD_UID_KEY = "kubetee.io/pod-uid"
MAX_BODY_BYTES = 16 * 1024
# A pod's init-data is the same in every round: its reading is kept, keyed by the exact
# body (bounded: entries of at most 1 KiB, the runtime's are about 150 bytes).
_CACHED_BODY_CHARS = 1024
_CACHED_DOCUMENTS = 4096


class InitDataError(ValueError):
    """The init-data is not a document this implementation reads, or names no pod."""


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """The pod an enclave was launched for, as its init-data states it."""

    namespace: str
    name: str
    uid: str


@functools.lru_cache(maxsize=64)
def pod_init_data(pod: PodIdentity) -> InitData:
    """The init-data naming ``pod`` (TOML, SHA-384)."""
    lines = [
        f'version = "{INIT_DATA_VERSION}"',
        'algorithm = "sha384"',
        "",
        "[data]",
        *(
            f"{json.dumps(key)} = {json.dumps(value)}"
            for key, value in (
                (NAMESPACE_KEY, pod.namespace),
                (POD_KEY, pod.name),
                (POD_UID_KEY, pod.uid),
            )
        ),
    ]
    return InitData(format="toml", body="\n".join(lines) + "\n")


@dataclass(frozen=True, slots=True)
class PodLaunchData:
    """What a pod's enclave is launched and attested with, the same in every round: the
    init-data naming the pod and the CONFIGID binding it."""

    init_data: InitData
    config_id: bytes


@functools.lru_cache(maxsize=64)
def pod_launch_data(pod: PodIdentity) -> PodLaunchData:
    """:func:`pod_init_data` and its :func:`config_id_for`, made once per pod (a runtime
    re-attests the same pod for its whole life)."""
    init_data = pod_init_data(pod)
    return PodLaunchData(init_data=init_data, config_id=config_id_for(init_data))


def config_id_for(init_data: InitData) -> bytes:
    """The 64-byte CONFIGID binding ``init_data``: its digest, zero padded."""
    return _config_id(init_data, _document(init_data))


def pod_of(init_data: InitData) -> PodIdentity:
    """The pod ``init_data`` names; :class:`InitDataError` if it names none."""
    return _pod_in(_document(init_data))


def pod_and_config_id(init_data: InitData) -> tuple[PodIdentity, bytes]:
    """:func:`pod_of` and :func:`config_id_for` at once, reading the document once."""
    if len(init_data.body) <= _CACHED_BODY_CHARS:
        return _read_cached(init_data.format, init_data.body)
    return _read(init_data)


@functools.lru_cache(maxsize=_CACHED_DOCUMENTS)
def _read_cached(format_: str, body: str) -> tuple[PodIdentity, bytes]:
    """:func:`_read` of one exact document (an invalid one raises and is not kept)."""
    return _read(InitData(format=format_, body=body))


def _read(init_data: InitData) -> tuple[PodIdentity, bytes]:
    document = _document(init_data)
    return _pod_in(document), _config_id(init_data, document)


def _config_id(init_data: InitData, document: dict[str, object]) -> bytes:
    digest = _digest(init_data, document)
    return digest + bytes(CONFIG_ID_SIZE - len(digest))


def _pod_in(document: dict[str, object]) -> PodIdentity:
    data = document.get("data")
    if not isinstance(data, dict):
        raise InitDataError("init-data has no [data] table")
    values = [data.get(key) for key in (NAMESPACE_KEY, POD_KEY, POD_UID_KEY)]
    if not all(isinstance(value, str) and value for value in values):
        raise InitDataError(
            f"init-data must name the pod: {NAMESPACE_KEY!r}, {POD_KEY!r} and {POD_UID_KEY!r}"
        )
    namespace, name, uid = (str(value) for value in values)
    return PodIdentity(namespace=namespace, name=name, uid=uid)


def _document(init_data: InitData) -> dict[str, object]:
    if init_data.format not in FORMATS:
        raise InitDataError(f"init-data format must be one of {', '.join(FORMATS)}")
    if len(init_data.body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise InitDataError(f"init-data is larger than {MAX_BODY_BYTES} bytes")
    try:
        if init_data.format == "toml":
            document: object = tomllib.loads(init_data.body)
        else:
            document = json.loads(init_data.body)
    except (ValueError, RecursionError):
        raise InitDataError(f"init-data is not a {init_data.format} document") from None
    if not isinstance(document, dict):
        raise InitDataError("init-data must be a table of version, algorithm and data")
    if document.get("version") != INIT_DATA_VERSION:
        raise InitDataError(f"init-data version must be {INIT_DATA_VERSION!r}")
    return document


def _digest(init_data: InitData, document: dict[str, object]) -> bytes:
    algorithm = document.get("algorithm")
    hash_function = ALGORITHMS.get(algorithm) if isinstance(algorithm, str) else None
    if hash_function is None:
        raise InitDataError(f"init-data algorithm must be one of {', '.join(ALGORITHMS)}")
    try:
        body = init_data.body.encode()
    except UnicodeError:
        raise InitDataError("init-data is not valid Unicode") from None
    return hash_function(body).digest()
