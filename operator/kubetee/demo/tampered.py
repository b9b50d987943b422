"""The attacker's enclave both demos show refused: the example workload with one byte
changed, signed with a key of the attacker's own."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from enclave_runtime.enclave.build import build_directory
from enclave_runtime.enclave.bundle import bundle_configmap
from enclave_runtime.enclave.errors import EnclaveError
from enclave_runtime.enclave.manifest import MANIFEST_FILE, SIGSTRUCT_FILE, load_manifest
from enclave_runtime.sgx.enclave import EnclaveSigner
from kubetee.cluster.layout import repo_root
from kubetee.demo.errors import DemoError


def tampered_bundle(configmap_name: str) -> tuple[dict[str, Any], str]:
    """The tampered enclave as a bundle ConfigMap named ``configmap_name``; its MRENCLAVE."""
    with tempfile.TemporaryDirectory(prefix="kubetee-demo-") as scratch:
        directory = Path(scratch) / "enclave-app"
        shutil.copytree(repo_root() / "deploy" / "examples" / "enclave-app", directory)
        program = directory / "app" / "server.py"
        program.write_bytes(program.read_bytes().replace(b"PORT = 8080", b"PORT = 8081"))
        try:
            built = build_directory(directory, EnclaveSigner.generate())
            configmap = bundle_configmap(
                load_manifest(directory / MANIFEST_FILE),
                (directory / SIGSTRUCT_FILE).read_bytes(),
                directory,
                configmap_name,
            )
        except EnclaveError as error:
            raise DemoError(f"cannot build the tampered enclave: {error}") from None
    return configmap, built.mrenclave.hex()
