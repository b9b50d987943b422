"""Loading: EINIT's checks and trusted files, as a refusal to run when anything changed."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from enclave_runtime.enclave.build import build_directory
from enclave_runtime.enclave.errors import LaunchRefusedError, TrustedFileError
from enclave_runtime.enclave.loader import from_directory, load
from enclave_runtime.enclave.manifest import MANIFEST_FILE, SIGSTRUCT_FILE, load_manifest
from enclave_runtime.sgx.enclave import EnclaveSigner

from .builders import HELPER, WORKLOAD, make_enclave


def _load(directory: Path, private: Path):  # type: ignore[no-untyped-def]
    return load(
        load_manifest(directory / MANIFEST_FILE),
        (directory / SIGSTRUCT_FILE).read_bytes(),
        from_directory(directory),
        private,
    )


def test_a_built_enclave_loads_into_its_private_directory(
    tmp_path: Path, author: EnclaveSigner
) -> None:
    built = make_enclave(tmp_path / "enc", author, out=tmp_path / "out")
    loaded = _load(tmp_path / "enc", tmp_path / "private")
    assert loaded.identity.mrenclave == built.mrenclave
    assert loaded.identity.mrsigner == author.mrsigner
    assert (loaded.identity.isv_prod_id, loaded.identity.isv_svn) == (7, 3)
    assert (loaded.root / "app" / "server.py").read_text() == WORKLOAD
    assert (loaded.root / "app" / "helper.txt").read_text() == HELPER
    assert stat.S_IMODE((loaded.root / "app" / "helper.txt").stat().st_mode) == 0o400
    assert stat.S_IMODE(loaded.root.stat().st_mode) == 0o700


def test_one_changed_byte_of_the_program_changes_mrenclave(
    tmp_path: Path, author: EnclaveSigner
) -> None:
    genuine = make_enclave(tmp_path / "a", author, out=tmp_path / "out")
    tampered = make_enclave(
        tmp_path / "b", author, out=tmp_path / "out", workload=WORKLOAD.replace("db", "dc", 1)
    )
    assert len(WORKLOAD) == len(WORKLOAD.replace("db", "dc", 1))
    assert genuine.mrenclave != tampered.mrenclave
    assert genuine.mrsigner == tampered.mrsigner


def test_svn_and_product_are_signed_not_measured(tmp_path: Path, author: EnclaveSigner) -> None:
    old = make_enclave(tmp_path / "a", author, out=tmp_path / "out", isv_svn=3)
    new = make_enclave(tmp_path / "b", author, out=tmp_path / "out", isv_svn=4)
    assert old.mrenclave == new.mrenclave
    assert (old.sigstruct.isv_svn, new.sigstruct.isv_svn) == (3, 4)


@pytest.mark.parametrize("path", ["app/server.py", "app/helper.txt"])
def test_a_modified_trusted_file_is_refused(
    tmp_path: Path, author: EnclaveSigner, path: str
) -> None:
    make_enclave(tmp_path / "enc", author, out=tmp_path / "out")
    target = tmp_path / "enc" / path
    target.write_bytes(target.read_bytes() + b"#")
    with pytest.raises(TrustedFileError, match=f"{path}' was modified"):
        _load(tmp_path / "enc", tmp_path / "private")


def test_a_missing_trusted_file_is_refused(tmp_path: Path, author: EnclaveSigner) -> None:
    make_enclave(tmp_path / "enc", author, out=tmp_path / "out")
    (tmp_path / "enc" / "app" / "helper.txt").unlink()
    with pytest.raises(TrustedFileError, match="cannot be read"):
        _load(tmp_path / "enc", tmp_path / "private")


def test_a_manifest_edited_after_signing_does_not_launch(
    tmp_path: Path, author: EnclaveSigner
) -> None:
    make_enclave(tmp_path / "enc", author, out=tmp_path / "out")
    manifest_path = tmp_path / "enc" / MANIFEST_FILE
    document = json.loads(manifest_path.read_text())
    document["args"] = ["/tmp/elsewhere"]
    manifest_path.write_text(json.dumps(document))
    with pytest.raises(LaunchRefusedError, match="measurement mismatch"):
        _load(tmp_path / "enc", tmp_path / "private")


def test_a_program_changed_and_rehashed_without_resigning_does_not_launch(
    tmp_path: Path, author: EnclaveSigner
) -> None:
    make_enclave(tmp_path / "enc", author, out=tmp_path / "out")
    signature = (tmp_path / "enc" / SIGSTRUCT_FILE).read_bytes()
    (tmp_path / "enc" / "app" / "server.py").write_text(WORKLOAD + "# evil\n")
    build_directory(tmp_path / "enc", EnclaveSigner.generate())  # rehash the manifest
    (tmp_path / "enc" / SIGSTRUCT_FILE).write_bytes(signature)  # keep the author's SIGSTRUCT
    with pytest.raises(LaunchRefusedError, match="EINIT refused"):
        _load(tmp_path / "enc", tmp_path / "private")


def test_a_corrupted_sigstruct_does_not_launch(tmp_path: Path, author: EnclaveSigner) -> None:
    make_enclave(tmp_path / "enc", author, out=tmp_path / "out")
    sig = bytearray((tmp_path / "enc" / SIGSTRUCT_FILE).read_bytes())
    sig[700] ^= 0xFF
    (tmp_path / "enc" / SIGSTRUCT_FILE).write_bytes(bytes(sig))
    with pytest.raises(LaunchRefusedError, match=r"does not verify|Q1/Q2"):
        _load(tmp_path / "enc", tmp_path / "private")
