"""Publishing a newer TCB evaluation: the PCS serves it at once, a verifier with a refresh
interval uses it within that interval, and a quote from an unchanged platform is judged
by it (OutOfDate, with the advisory and the higher evaluation number)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.quote import ReportBody
from kubetee.attestation.verifier import QuoteVerifier
from kubetee.attestation_service.pccs import CollateralMetrics, PccsCollateral
from kubetee.pcs import api, evaluations
from kubetee.pcs.stores import SimulatedStore

from .conftest import serve

FAMILY = bytes.fromhex("00606A000000")
OTHER = bytes.fromhex("00906ED50000")


@pytest.fixture
def authority_dir(tmp_path: Path, authority: SimulatedAuthority) -> Path:
    directory = tmp_path / "pcs"
    authority.save(directory)
    return directory


def _publish(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetee.cli", "pcs", "publish-tcb", f"--authority-dir={directory}",
         *extra],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_publish_raises_the_required_svns_and_marks_the_earlier_levels(authority_dir: Path) -> None:
    before = evaluations.load_settings(authority_dir)
    result = _publish(
        authority_dir, "--fmspc=00606a000000", "--raise-component=2", "--advisory=INTEL-SA-01234"
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    after = evaluations.load_settings(authority_dir)
    assert printed["tcbEvaluationDataNumber"] == before.tcb_evaluation_data_number + 1
    assert after.tcb_evaluation_data_number == before.tcb_evaluation_data_number + 1
    levels = after.levels_for(FAMILY)
    old_up_to_date = before.levels_for(FAMILY)[0]
    assert levels[0].status == "UpToDate"
    assert levels[0].components[2] == old_up_to_date.components[2] + 1
    assert printed["upToDate"]["cpusvn"] == bytes(levels[0].components).hex()
    assert [level.status for level in levels[1:]] == [
        "OutOfDate",
        "OutOfDate",
        "OutOfDate",
        "Revoked",
    ]
    assert all("INTEL-SA-01234" in level.advisory_ids for level in levels[1:])
    # The other family is untouched.
    assert after.levels_for(OTHER) == before.levels_for(OTHER)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--fmspc=112233445566"], "not a family"),
        (["--fmspc=zz"], "12 hex digits"),
        (["--fmspc=00606A000000", "--previous-status=UpToDate"], "--previous-status"),
        (["--fmspc=00606A000000", "--raise-component=16"], "0..15"),
        (["--fmspc=00606A000000", "--advisory=bad advisory\n"], "advisory ids"),
    ],
)
def test_a_bad_publication_is_refused_and_changes_nothing(
    authority_dir: Path, args: list[str], says: str
) -> None:
    before = (authority_dir / "authority.json").read_bytes()
    result = _publish(authority_dir, *args)
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert (authority_dir / "authority.json").read_bytes() == before


async def test_a_published_evaluation_reaches_a_verifier_within_its_refresh_interval(
    tmp_path: Path, authority: SimulatedAuthority
) -> None:
    directory = tmp_path / "pcs"
    shutil.copytree(Path(authority_dir_of(authority, tmp_path)), directory)
    served_authority = SimulatedAuthority.load(directory)
    store = SimulatedStore(served_authority, settings_file=directory / "authority.json")
    runner, served = await serve(store)
    platform = served_authority.issue_platform(fmspc=FAMILY, ca="platform")
    quote = platform.quote(ReportBody(report_data=bytes(64)))
    verifier = QuoteVerifier(served_authority.root_ca_der)
    source = PccsCollateral(
        served.url, metrics=CollateralMetrics(CollectorRegistry()), max_age_seconds=60
    )
    try:
        now = datetime.now(UTC)
        first = verifier.verify(
            quote, await source.collateral_for(FAMILY, "platform", now), now=now
        )
        assert first.tcb_status == "UpToDate"
        settings = evaluations.load_settings(directory)
        evaluations.publish(
            settings, FAMILY, raise_component=0, pcesvn=None, previous_status="OutOfDate",
            advisories=("INTEL-SA-01234",), now=now,
        )  # fmt: skip
        evaluations.save_settings(directory, settings)
        # Within the refresh interval the cached evaluation is still used ...
        soon = now + timedelta(seconds=30)
        cached = verifier.verify(
            quote, await source.collateral_for(FAMILY, "platform", soon), now=soon
        )
        assert cached.tcb_status == "UpToDate"
        assert served.requests[api.TCB_PATH] == 1
        # ... after it, the newer one, though nextUpdate is weeks away.
        later = now + timedelta(seconds=61)
        renewed = verifier.verify(
            quote, await source.collateral_for(FAMILY, "platform", later), now=later
        )
        assert renewed.tcb_status == "OutOfDate"
        assert "INTEL-SA-01234" in renewed.advisory_ids
        assert renewed.tcb_evaluation_data_number == first.tcb_evaluation_data_number + 1
    finally:
        await source.close()
        await runner.cleanup()


def authority_dir_of(authority: SimulatedAuthority, tmp_path: Path) -> Path:
    directory = tmp_path / "saved"
    authority.save(directory)
    return directory


def test_a_read_only_authority_publishes_into_its_state_dir(
    authority_dir: Path, tmp_path: Path
) -> None:
    """As the chart runs it: the authority a read-only Secret, the evaluations a writable
    copy that publish-tcb finds through $KUBETEE_PCS_STATE_DIR."""
    state = tmp_path / "state"
    state.mkdir()
    seeded = evaluations.seed_state(authority_dir, state)
    number = seeded.tcb_evaluation_data_number
    authority_dir.chmod(0o500)  # read-only, as a Secret volume is
    try:
        result = subprocess.run(
            [sys.executable, "-m", "kubetee.cli", "pcs", "publish-tcb", "--fmspc=00606A000000"],
            capture_output=True, text=True, check=False, timeout=60,
            env={**os.environ, "KUBETEE_PCS_STATE_DIR": str(state)},
        )  # fmt: skip
    finally:
        authority_dir.chmod(0o700)
    assert result.returncode == 0, result.stderr
    assert evaluations.load_settings(state).tcb_evaluation_data_number == number + 1
    assert evaluations.load_settings(authority_dir).tcb_evaluation_data_number == number
    # A restarted server keeps what was published in its pod's life.
    again = evaluations.seed_state(authority_dir, state)
    assert again.tcb_evaluation_data_number == number + 1


def test_publish_without_a_directory_says_which_to_name() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBETEE_PCS_STATE_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "kubetee.cli", "pcs", "publish-tcb", "--fmspc=00606A000000"],
        capture_output=True, text=True, check=False, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--authority-dir" in result.stderr
