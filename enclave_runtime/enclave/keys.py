"""The enclave author's signing key: RSA-3072, public exponent 3, as SGX requires.

``kubetee enclave keygen`` makes one (the same as ``openssl genrsa -3 -out key.pem
3072``). The sample key shipped with KubeTEE is public, like the SGX SDK's sample key:
it is for tests and the simulator only, and its MRSIGNER pins nothing.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

from enclave_runtime.enclave.errors import EnclaveError
from enclave_runtime.sgx.enclave import EnclaveSigner

SAMPLE_KEY_RESOURCE = "simulation_signer.pem"


def sample_signer() -> EnclaveSigner:
    """The public sample key (tests and simulator only)."""
    pem = resources.files("enclave_runtime.runtime.data").joinpath(SAMPLE_KEY_RESOURCE)
    return EnclaveSigner.from_pem(pem.read_bytes())


@functools.cache
def sample_mrsigner() -> bytes:
    """Computed once: loading the RSA-3072 key costs milliseconds, and every attestation
    outside the simulator compares a policy with it."""
    return sample_signer().mrsigner


def load_author_key(path: Path) -> EnclaveSigner:
    try:
        return EnclaveSigner.from_pem(path.read_bytes())
    except OSError as exc:
        raise EnclaveError(
            f"cannot read the signing key {path}: {exc.strerror or exc}; make one with "
            "`kubetee enclave keygen --out KEY.pem`"
        ) from None
    except (ValueError, TypeError) as exc:
        raise EnclaveError(f"{path} is not an enclave signing key: {exc}") from None


def write_new_key(path: Path) -> EnclaveSigner:
    """Generate a key and write it as PKCS#8 PEM, readable by its owner only."""
    signer = EnclaveSigner.generate()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise EnclaveError(f"{path} exists; refusing to overwrite a signing key") from None
    except OSError as exc:
        raise EnclaveError(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(signer.private_pem())
    return signer
