"""The simulated enclave a replica runs: what it loads, its identity, its reports.

MRENCLAVE measures the files of ``spec.enclave.files`` (path and content) and the
layout settings that shape enclave memory (heap MiB, thread count), as the CPU
measures the pages and TCS an enclave is built from. DEBUG, product id and SVN are
not measured (in SGX they come from the SIGSTRUCT and launch attributes), so
raising ``isvSvn`` keeps MRENCLAVE.

MRSIGNER comes from the enclave signing key: ``KUBETEE_SIGNER_KEY`` if set, else the
simulation signing key shipped with KubeTEE (public, like the SGX SDK's sample key:
fine for the simulator, meaningless as a trust anchor).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from enclave_runtime.runtime.errors import RuntimeConfigError
from enclave_runtime.runtime.settings import EnclaveConfig
from enclave_runtime.sgx.enclave import EnclaveSigner, make_report_body, measure_enclave
from enclave_runtime.sgx.quote import ReportBody

SIMULATION_SIGNER_RESOURCE = "simulation_signer.pem"


@dataclass(frozen=True, slots=True)
class EnclaveIdentity:
    """Who the enclave is, as its SGX reports state it."""

    mrenclave: bytes
    mrsigner: bytes
    debug: bool
    isv_prod_id: int
    isv_svn: int

    def report_body(self, report_data: bytes, config_id: bytes = bytes(64)) -> ReportBody:
        """The body of an EREPORT this enclave makes with ``report_data``, launched with
        ``config_id`` (none: zeros)."""
        return make_report_body(
            self.mrenclave,
            self.mrsigner,
            debug=self.debug,
            isv_prod_id=self.isv_prod_id,
            isv_svn=self.isv_svn,
            report_data=report_data,
            config_id=config_id,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "mrenclave": self.mrenclave.hex(),
            "mrsigner": self.mrsigner.hex(),
            "debug": self.debug,
            "isvProdId": self.isv_prod_id,
            "isvSvn": self.isv_svn,
        }


def load_signer(key_path: Path | None) -> EnclaveSigner:
    try:
        if key_path is None:
            pem = resources.files("enclave_runtime.runtime.data").joinpath(
                SIMULATION_SIGNER_RESOURCE
            )
            return EnclaveSigner.from_pem(pem.read_bytes())
        return EnclaveSigner.from_pem(key_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise RuntimeConfigError(f"cannot load the enclave signing key: {exc}") from None


def enclave_files(config: EnclaveConfig, files_dir: Path | None) -> dict[str, bytes]:
    """Path -> content of every file the enclave loads: inline, or mounted from a
    ConfigMap at ``mountedAt`` (or at ``<files_dir>/<path>`` when that is given)."""
    files: dict[str, bytes] = {}
    for entry in config.files:
        if entry.content is not None:
            files[entry.path] = entry.content.encode()
            continue
        if files_dir is not None:
            source = files_dir / entry.path
        elif entry.mounted_at is not None:
            source = Path(entry.mounted_at)
        else:
            raise RuntimeConfigError(f"enclave file {entry.path!r} has neither content nor mount")
        try:
            files[entry.path] = source.read_bytes()
        except OSError as exc:
            raise RuntimeConfigError(
                f"enclave file {entry.path!r} should be mounted at {source} ({exc.strerror or exc})"
            ) from None
    return files


def enclave_config(config: EnclaveConfig) -> dict[str, object]:
    """The measured layout settings."""
    return {"heapMiB": config.heap_mi_b, "threads": config.threads}


def identity_of(
    config: EnclaveConfig, files_dir: Path | None, signer: EnclaveSigner
) -> EnclaveIdentity:
    try:
        mrenclave = measure_enclave(enclave_files(config, files_dir), enclave_config(config))
    except ValueError as exc:
        raise RuntimeConfigError(f"cannot measure the enclave: {exc}") from None
    return EnclaveIdentity(
        mrenclave=mrenclave,
        mrsigner=signer.mrsigner,
        debug=config.debug,
        isv_prod_id=config.isv_prod_id,
        isv_svn=config.isv_svn,
    )
