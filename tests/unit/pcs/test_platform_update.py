"""A microcode update of a node's platform: new CPUSVN, same PPID and keys; once its new
PCK certificate is saved the running quoting service quotes at the new level, which the
newer TCB evaluation rates UpToDate again."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from enclave_runtime.quoting.provision import PlatformUpdateError, update_platform
from enclave_runtime.quoting.server import CurrentPlatform
from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.platform import PlatformKeys, SimulatedPlatform, is_registered
from enclave_runtime.sgx.quote import ReportBody
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.verifier import QuoteVerifier
from kubetee.pcs import evaluations

FAMILY = bytes.fromhex("00606A000000")


def test_an_updated_platform_quotes_at_the_new_level_once_registered_again(
    tmp_path: Path,
) -> None:
    authority = SimulatedAuthority.generate()
    platform = authority.issue_platform(fmspc=FAMILY, ca="platform")
    platform.save(tmp_path)
    serving = CurrentPlatform(SimulatedPlatform.load(tmp_path), tmp_path)
    now = datetime.now(UTC)
    published = evaluations.publish(
        authority.settings, FAMILY, raise_component=1, pcesvn=None,
        previous_status="OutOfDate", advisories=("INTEL-SA-01234",), now=now,
    )  # fmt: skip
    verifier = QuoteVerifier(authority.root_ca_der)
    collateral = Collateral.from_dict(authority.collateral(now, fmspc=FAMILY, ca="platform"))

    def status() -> str:
        quote = serving.get().quote(ReportBody(report_data=bytes(64)))
        return verifier.verify(quote, collateral, now=now).tcb_status

    assert status() == "OutOfDate"
    new_cpusvn = bytes(published.levels[0].components)
    keys = update_platform(tmp_path, new_cpusvn)
    assert not is_registered(tmp_path)
    assert status() == "OutOfDate"  # still the old certificate until registered again
    # What the PCS does on registration: certify the same key at the new TCB.
    chain = authority.issue_pck_chain(keys.identity, keys.pck_key.public_key())
    keys.registered(chain, authority.settings.quoting_enclave).save(tmp_path)
    assert status() == "UpToDate"
    assert serving.get().identity.ppid == platform.identity.ppid
    assert PlatformKeys.load(tmp_path).pck_key.public_key() == platform.pck_certificate.public_key()


def test_an_update_that_lowers_or_keeps_the_tcb_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    authority = SimulatedAuthority.generate()
    platform = authority.issue_platform(fmspc=FAMILY, ca="platform")
    platform.save(tmp_path)
    before = (tmp_path / "platform.json").read_bytes()
    lower = bytearray(platform.identity.cpusvn)
    lower[0] -= 1
    for cpusvn, says in (
        (bytes(lower), r"would lower CPUSVN components \[0\]"),
        (platform.identity.cpusvn, "at this TCB already"),
        (b"\x01", "16 bytes"),
    ):
        with pytest.raises(PlatformUpdateError, match=says):
            update_platform(tmp_path, cpusvn)
    assert (tmp_path / "platform.json").read_bytes() == before
    assert is_registered(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "kubetee.cli", "quoting-service", "update",
         f"--platform-dir={tmp_path}", "--cpusvn=zz"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "16 bytes" in result.stderr
    assert "Traceback" not in result.stderr
    raised = bytearray(platform.identity.cpusvn)
    raised[3] += 1
    result = subprocess.run(
        [sys.executable, "-m", "kubetee.cli", "quoting-service", "update",
         f"--platform-dir={tmp_path}", f"--cpusvn={bytes(raised).hex()}", "--pcesvn=20"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pcesvn"] == 20
    assert not is_registered(tmp_path)
