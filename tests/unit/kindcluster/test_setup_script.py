"""deploy/kind/setup-docker-engine.sh refuses what it cannot do, before changing anything."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "kind" / "setup-docker-engine.sh"


def test_script_parses() -> None:
    subprocess.run(["sh", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="dropping to another user needs root and setpriv",
)
def test_non_root_is_told_to_run_it_as_root() -> None:
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", str(SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "must run as root" in proc.stderr
    assert "sudo sh" in proc.stderr
