"""`make demo` runs `kubetee demo`: the whole story, on a cluster of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubetee.cluster.cluster import LocalCluster
from kubetee.cluster.layout import ClusterLayout

pytestmark = pytest.mark.e2e


def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    name = f"demo-{os.getpid()}"
    workdir = tmp_path / "cluster"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "kubetee.cli", "demo", "--cluster", name,
             "--workdir", str(workdir)],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        output = result.stdout
        assert result.returncode == 0, f"{output[-4000:]}\n{result.stderr[-4000:]}"
    finally:
        LocalCluster(ClusterLayout.for_name(name, workdir)).down(purge=True)

    for step in range(1, 8):
        assert f"[{step}/7]" in output
    assert "3 replicas scheduled by the real kube-scheduler on EPC" in output
    # TCB recovery runs as the chart sets it up: each node judged by the PCS's TCB Info.
    assert "3 nodes labelled with their SGX TCB status" in output
    assert output.count("SGX TCB UpToDate under evaluation") == 3
    assert "3/3 replicas attested; only then did each workload start and use the secret" in output
    assert output.count("serves the secret's hash") == 3
    assert "Event MeasurementMismatch" in output
    assert "the tampered workload never started" in output
    assert "HPA scaled 3 -> " in output
    assert "KubeTEE demo finished" in output
    assert "kubectl get ec,epcp,pods,hpa" in output
    # The example's secret value never appears in what the demo prints.
    assert "change-me" not in output + result.stderr
