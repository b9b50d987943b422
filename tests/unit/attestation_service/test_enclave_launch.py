"""Acceptance: what gets the secret is what was measured and signed by its author.

The enclave runtime launches a built enclave against the real attestation stack (real
quoting service, real KBS service, DCAP quotes): the workload runs only after attestation,
with the secret in its environment and in its private directory; a changed program or a
foreign signer gets nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from enclave_runtime.enclave.launcher import Launcher
from enclave_runtime.enclave.loader import from_directory, load
from enclave_runtime.enclave.manifest import MANIFEST_FILE, SIGSTRUCT_FILE, load_manifest
from enclave_runtime.sgx.enclave import EnclaveSigner
from tests.unit.enclave.builders import HELPER, WORKLOAD, make_enclave

from .conftest import API_KEY_VALUE, SECRET_VALUE, Stack

AUTHOR = EnclaveSigner.generate()
ATTACKER = EnclaveSigner.generate()


async def _launch(stack: Stack, directory: Path, private: Path) -> int:
    loaded = load(
        load_manifest(directory / MANIFEST_FILE),
        (directory / SIGSTRUCT_FILE).read_bytes(),
        from_directory(directory),
        private,
    )
    pod = stack.add_pod("payments-1")
    settings = stack.runtime_settings(pod).model_copy(
        update={"secrets_dir": private / "secrets", "state_dir": private}
    )
    launcher = Launcher(loaded, settings, stack.quoting(), stack.client_context())
    return await launcher.run()


async def test_the_measured_workload_gets_its_secrets_inside_the_enclave(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    built = make_enclave(tmp_path / "enc", AUTHOR, out=out)
    stack.set_policy(mrenclave=[built.mrenclave.hex()], mrsigner=[AUTHOR.mrsigner.hex()])

    assert await _launch(stack, tmp_path / "enc", tmp_path / "private") == 0

    db, api, helper = out.read_text().split(" ", 2)
    assert db == hashlib.sha256(SECRET_VALUE).hexdigest()  # a file in its private directory
    assert api == hashlib.sha256(API_KEY_VALUE).hexdigest()  # its environment
    assert helper == HELPER
    assert not (tmp_path / "private" / "secrets" / "db").exists()  # wiped once it ended
    assert SECRET_VALUE.decode(errors="replace") not in caplog.text
    assert API_KEY_VALUE.decode() not in caplog.text


async def test_one_changed_byte_of_the_program_gets_no_secret(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    genuine = make_enclave(tmp_path / "genuine", AUTHOR, out=tmp_path / "out")
    stack.set_policy(mrenclave=[genuine.mrenclave.hex()])
    # The attacker changes one byte and rebuilds (even with the author's key).
    tampered = make_enclave(
        tmp_path / "tampered", AUTHOR, out=tmp_path / "out", workload=WORKLOAD.replace("1]", "0]")
    )
    assert tampered.mrenclave != genuine.mrenclave

    assert await _launch(stack, tmp_path / "tampered", tmp_path / "private") == 3

    assert "MeasurementMismatch" in caplog.text
    assert not (tmp_path / "out").exists()  # the workload never started


async def test_a_sigstruct_of_another_signer_is_refused_by_a_pinned_mrsigner(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    forged = make_enclave(tmp_path / "enc", ATTACKER, out=tmp_path / "out")
    assert forged.mrsigner == ATTACKER.mrsigner != AUTHOR.mrsigner
    stack.set_policy(mrsigner=[AUTHOR.mrsigner.hex()])

    assert await _launch(stack, tmp_path / "enc", tmp_path / "private") == 3

    assert "SignerMismatch" in caplog.text
    assert not (tmp_path / "out").exists()
