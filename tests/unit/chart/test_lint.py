"""helm lint --strict is clean for every scenario (warnings fail too)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubetee.cluster.toolchain import KUBERNETES_VERSION
from tests.unit.chart.conftest import CHART, helm_command, scenario_files


@pytest.mark.parametrize("scenario", scenario_files(), ids=lambda p: Path(p).stem)
def test_lint_is_clean(binaries: None, scenario: Path) -> None:
    result = subprocess.run(
        helm_command(
            "lint",
            str(CHART),
            "--strict",
            f"--kube-version={KUBERNETES_VERSION}",
            "-f",
            str(scenario),
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    problems = [
        line for line in result.stdout.splitlines() if line.startswith(("[WARNING]", "[ERROR]"))
    ]
    assert not problems
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_lint_fails_on_a_template_error(binaries: None, tmp_path: Path) -> None:
    # The check above can fail: a template that cannot render is an error.
    values = tmp_path / "values.yaml"
    values.write_text("attestationService:\n  trust:\n    source: files\n    configMap: ''\n")
    result = subprocess.run(
        helm_command("lint", str(CHART), "--strict", "-f", str(values)),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "[ERROR]" in result.stdout
