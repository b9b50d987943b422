"""``kubetee enclave init`` and ``build``: write the manifest, measure it, sign it.

``init`` hashes the trusted files into a new manifest. ``build`` hashes them again
(the files may have changed since), measures the enclave into MRENCLAVE and signs a
SIGSTRUCT over it with the author's key, as ``gramine-sgx-sign`` and ``occlum build`` do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from enclave_runtime.enclave.errors import EnclaveError, ManifestError, TrustedFileError
from enclave_runtime.enclave.manifest import (
    MANIFEST_FILE,
    SIGSTRUCT_FILE,
    EnclaveManifest,
    expand_paths,
    first_error,
    hash_files,
    load_manifest,
)
from enclave_runtime.enclave.measure import mrenclave_of
from enclave_runtime.sgx.enclave import EnclaveSigner
from enclave_runtime.sgx.sigstruct import Sigstruct, sign_sigstruct


@dataclass(frozen=True, slots=True)
class BuiltEnclave:
    """A measured and signed enclave: its manifest and SIGSTRUCT."""

    manifest: EnclaveManifest
    sigstruct: Sigstruct
    changed: list[str]

    @property
    def mrenclave(self) -> bytes:
        return self.sigstruct.enclave_hash

    @property
    def mrsigner(self) -> bytes:
        return self.sigstruct.mrsigner


def init_manifest(
    root: Path,
    *,
    entrypoint: str,
    args: list[str],
    trusted: list[str],
    env: dict[str, str],
    heap_mib: int,
    threads: int,
    isv_prod_id: int,
    isv_svn: int,
    debug: bool,
) -> EnclaveManifest:
    """A new manifest for the files under ``root`` (not written)."""
    paths = expand_paths(root, [entrypoint, *trusted])
    try:
        # By the manifest's own names, so a refusal names the field as the file does.
        return EnclaveManifest.model_validate(
            {
                "entrypoint": entrypoint,
                "args": args,
                "env": env,
                "trustedFiles": hash_files(root, paths),
                "heapMiB": heap_mib,
                "threads": threads,
                "isvProdId": isv_prod_id,
                "isvSvn": isv_svn,
                "debug": debug,
            }
        )
    except ValidationError as exc:
        raise ManifestError(f"cannot make a manifest: {first_error(exc)}") from None


def rehash(manifest: EnclaveManifest, root: Path) -> tuple[EnclaveManifest, list[str]]:
    """The manifest with every trusted file hashed again; and the paths that changed."""
    fresh = hash_files(root, [f.path for f in manifest.trusted_files])
    changed = [
        new.path for old, new in zip(manifest.trusted_files, fresh, strict=True) if old != new
    ]
    return manifest.model_copy(update={"trusted_files": fresh}), changed


def sign(manifest: EnclaveManifest, root: Path, signer: EnclaveSigner) -> Sigstruct:
    """Measure ``manifest`` (entrypoint read from ``root``) and sign its SIGSTRUCT."""
    try:
        entrypoint = (root / manifest.entrypoint).read_bytes()
    except OSError as exc:
        raise TrustedFileError(
            f"cannot read the entrypoint {manifest.entrypoint!r}: {exc.strerror or exc}"
        ) from None
    raw = sign_sigstruct(
        signer,
        mrenclave_of(manifest, entrypoint),
        isv_prod_id=manifest.isv_prod_id,
        isv_svn=manifest.isv_svn,
        debug=manifest.debug,
    )
    return Sigstruct.parse(raw)


def build_directory(
    directory: Path, signer: EnclaveSigner, *, root: Path | None = None
) -> BuiltEnclave:
    """Rehash, measure and sign the enclave of ``directory``; write manifest and .sig."""
    manifest_path = directory / MANIFEST_FILE
    files_root = root or directory
    manifest, changed = rehash(load_manifest(manifest_path), files_root)
    sigstruct = sign(manifest, files_root, signer)
    try:
        manifest_path.write_text(manifest.to_json())
        (directory / SIGSTRUCT_FILE).write_bytes(sigstruct.raw)
    except OSError as exc:
        raise EnclaveError(f"cannot write the signed enclave: {exc.strerror or exc}") from None
    return BuiltEnclave(manifest=manifest, sigstruct=sigstruct, changed=changed)
