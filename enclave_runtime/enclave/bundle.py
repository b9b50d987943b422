"""An enclave as a ConfigMap, for nodes without a container runtime (and small enclaves).

``kubetee enclave bundle`` prints a ConfigMap holding the signed manifest
(``enclave.manifest.json``), the SIGSTRUCT (``enclave.sig``, binaryData) and every
trusted file by content address (``sha256-<hex>``, binaryData): ConfigMap keys cannot
hold ``/``, and a content address needs no index. An EnclaveContainer names it in
``spec.enclave.bundle``; the runtime loads it with ``kubetee enclave run --bundle DIR``
and checks every file against the manifest as it would from an image.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from enclave_runtime.enclave.errors import ManifestError
from enclave_runtime.enclave.loader import bundle_key, from_directory, read_trusted
from enclave_runtime.enclave.manifest import (
    MANIFEST_FILE,
    SIGSTRUCT_FILE,
    EnclaveManifest,
    parse_manifest,
)

MAX_CONFIGMAP_BYTES = 1024 * 1024


def bundle_configmap(
    manifest: EnclaveManifest, sigstruct: bytes, root: Path, name: str
) -> dict[str, Any]:
    """The ConfigMap of a built enclave (trusted files read from ``root``, checked)."""
    binary = {SIGSTRUCT_FILE: base64.b64encode(sigstruct).decode()}
    source = from_directory(root)
    for entry in manifest.trusted_files:
        binary[bundle_key(entry.sha256)] = base64.b64encode(read_trusted(entry, source)).decode()
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "kubetee"}},
        "data": {MANIFEST_FILE: manifest.to_json()},
        "binaryData": binary,
    }
    size = len(yaml.safe_dump(document))
    if size > MAX_CONFIGMAP_BYTES:
        raise ManifestError(
            f"the enclave is {size} bytes as a ConfigMap, over Kubernetes' 1 MiB limit; "
            "wrap it into an enclave image instead (`kubetee enclave build --image`)"
        )
    return document


def from_configmap(document: dict[str, Any]) -> tuple[EnclaveManifest, bytes]:
    """The manifest and SIGSTRUCT of a bundle ConfigMap."""
    data = document.get("data") or {}
    binary = document.get("binaryData") or {}
    name = (document.get("metadata") or {}).get("name", "?")
    if MANIFEST_FILE not in data or SIGSTRUCT_FILE not in binary:
        raise ManifestError(
            f"ConfigMap {name} is not an enclave bundle: it needs {MANIFEST_FILE} in data "
            f"and {SIGSTRUCT_FILE} in binaryData (`kubetee enclave bundle`)"
        )
    try:
        sigstruct = base64.b64decode(binary[SIGSTRUCT_FILE], validate=True)
    except ValueError:
        raise ManifestError(f"ConfigMap {name}: {SIGSTRUCT_FILE} is not base64") from None
    return parse_manifest(data[MANIFEST_FILE], f"ConfigMap {name}"), sigstruct
