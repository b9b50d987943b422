"""Small enclave applications for the tests: written, initialised and signed."""

from __future__ import annotations

from pathlib import Path

from enclave_runtime.enclave.build import BuiltEnclave, build_directory, init_manifest
from enclave_runtime.enclave.manifest import MANIFEST_FILE
from enclave_runtime.sgx.enclave import EnclaveSigner

# The workload: writes what it got (a hash of its secret, never the secret) where its
# first argument says, so a test can see it ran and with which secret.
WORKLOAD = """\
import hashlib, os, pathlib, sys
out = pathlib.Path(sys.argv[1])
secrets_dir = os.environ.get("KUBETEE_SECRETS_DIR")
db = pathlib.Path(secrets_dir, "db").read_bytes() if secrets_dir else b""
api = os.environ.get("API_KEY", "").encode()
helper = pathlib.Path("app/helper.txt").read_text()
out.write_text(
    hashlib.sha256(db).hexdigest() + " " + hashlib.sha256(api).hexdigest() + " " + helper
)
"""
HELPER = "helper data\n"


def write_app(directory: Path, *, workload: str = WORKLOAD) -> None:
    (directory / "app").mkdir(parents=True, exist_ok=True)
    (directory / "app" / "server.py").write_text(workload)
    (directory / "app" / "helper.txt").write_text(HELPER)


def make_enclave(
    directory: Path,
    signer: EnclaveSigner,
    *,
    out: Path,
    workload: str = WORKLOAD,
    isv_prod_id: int = 7,
    isv_svn: int = 3,
    debug: bool = False,
) -> BuiltEnclave:
    """An enclave directory with a manifest, its files, and its SIGSTRUCT."""
    write_app(directory, workload=workload)
    manifest = init_manifest(
        directory,
        entrypoint="app/server.py",
        args=[str(out)],
        trusted=["app"],
        env={},
        heap_mib=16,
        threads=2,
        isv_prod_id=isv_prod_id,
        isv_svn=isv_svn,
        debug=debug,
    )
    (directory / MANIFEST_FILE).write_text(manifest.to_json())
    return build_directory(directory, signer)
