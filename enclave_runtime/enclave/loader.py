"""Loading an enclave as EINIT and a LibOS do: nothing runs unless it was measured.

1. The entrypoint is read and checked against its hash in the manifest; the manifest and
   entrypoint are measured into MRENCLAVE (:mod:`.measure`).
2. EINIT: the SIGSTRUCT must verify and its ENCLAVEHASH equal that measurement.
3. Every trusted file is read once, checked against its SHA-256 in the manifest (a
   modified file is a refusal, as Gramine's trusted files are), and written into the
   enclave's private directory, which is what the workload runs from: it sees exactly
   the bytes that were checked, whatever happens to the originals afterwards.

Where the trusted files come from: a directory holding them at their paths (an enclave
directory, or ``/kubetee/enclave/root`` of an enclave image), or a bundle (a ConfigMap
made by ``kubetee enclave bundle``) holding them by content, as ``sha256-<hex>``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from enclave_runtime.enclave.errors import LaunchRefusedError, TrustedFileError
from enclave_runtime.enclave.manifest import EnclaveManifest, TrustedFile
from enclave_runtime.enclave.measure import mrenclave_of
from enclave_runtime.runtime.enclave import EnclaveIdentity
from enclave_runtime.sgx.sigstruct import Sigstruct, SigstructError, einit

FileSource = Callable[[TrustedFile], Path]
"""Where a trusted file's content is read from."""


def from_directory(root: Path) -> FileSource:
    return lambda entry: root / entry.path


def from_bundle(bundle: Path) -> FileSource:
    return lambda entry: bundle / bundle_key(entry.sha256)


def bundle_key(sha256: str) -> str:
    """The bundle (ConfigMap) key of a trusted file: its content address."""
    return f"sha256-{sha256}"


@dataclass(frozen=True, slots=True)
class LoadedEnclave:
    """An enclave that passed EINIT, its trusted files copied into ``root``."""

    manifest: EnclaveManifest
    sigstruct: Sigstruct
    root: Path

    @property
    def identity(self) -> EnclaveIdentity:
        return identity_of(self.sigstruct)


def identity_of(sigstruct: Sigstruct) -> EnclaveIdentity:
    """The identity reports state: from the SIGSTRUCT that passed EINIT."""
    return EnclaveIdentity(
        mrenclave=sigstruct.enclave_hash,
        mrsigner=sigstruct.mrsigner,
        debug=sigstruct.debug,
        isv_prod_id=sigstruct.isv_prod_id,
        isv_svn=sigstruct.isv_svn,
    )


def read_trusted(entry: TrustedFile, source: FileSource) -> bytes:
    """The content of a trusted file, only if it hashes to the manifest's value."""
    location = source(entry)
    try:
        content = location.read_bytes()
    except OSError as exc:
        raise TrustedFileError(
            f"trusted file {entry.path!r} cannot be read from {location}: {exc.strerror or exc}"
        ) from None
    actual = hashlib.sha256(content).hexdigest()
    if actual != entry.sha256:
        raise TrustedFileError(
            f"trusted file {entry.path!r} was modified: its SHA-256 is {actual}, the "
            f"manifest requires {entry.sha256}; the enclave refuses to load it"
        )
    return content


def check_launch(manifest: EnclaveManifest, sigstruct: bytes, source: FileSource) -> Sigstruct:
    """Measure the manifest and entrypoint, and run EINIT's checks on the SIGSTRUCT."""
    entrypoint = read_trusted(manifest.trusted(manifest.entrypoint), source)
    try:
        return einit(sigstruct, mrenclave_of(manifest, entrypoint))
    except SigstructError as exc:
        raise LaunchRefusedError(f"EINIT refused the enclave: {exc}") from None


def load(
    manifest: EnclaveManifest, sigstruct: bytes, source: FileSource, private_dir: Path
) -> LoadedEnclave:
    """EINIT, then copy every verified trusted file under ``private_dir/root``."""
    checked = check_launch(manifest, sigstruct, source)
    root = private_dir / "root"
    try:
        root.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise TrustedFileError(f"cannot make the enclave's root {root}: {exc}") from None
    for entry in manifest.trusted_files:
        content = read_trusted(entry, source)
        target = root / entry.path
        mode = 0o500 if entry.path == manifest.entrypoint else 0o400
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
        except OSError as exc:
            raise TrustedFileError(
                f"cannot load trusted file {entry.path!r} into the enclave: {exc.strerror or exc}"
            ) from None
    return LoadedEnclave(manifest=manifest, sigstruct=checked, root=root)
