"""Rendering the KubeTEE chart with the real helm binary, for the chart's unit tests.

helm (and kube-scheduler, whose config loader validates the scheduler configuration) are
built from the Go module proxy by ``kubetee cluster build`` (``make binaries``), once per
machine; the session fixture builds them if they are missing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetee.cluster.toolchain import HELM, KUBERNETES, KUBERNETES_VERSION, Builder, binary_path

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "charts" / "kubetee"
SCENARIOS = Path(__file__).parent / "scenarios"
RELEASE = "kt"
NAMESPACE = "kubetee-system"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


def helm_command(*args: str) -> list[str]:
    """helm pinned to the cluster's Kubernetes version (it defaults to an old one)."""
    return [str(binary_path("helm")), *args]


@pytest.fixture(scope="session")
def binaries() -> None:
    Builder().ensure((HELM, KUBERNETES))


def template(*values_files: Path, set_values: tuple[str, ...] = (), release: str = RELEASE) -> str:
    """``helm template`` output as text; a failure shows helm's error."""
    command = helm_command(
        "template",
        release,
        str(CHART),
        f"--namespace={NAMESPACE}",
        f"--kube-version={KUBERNETES_VERSION}",
    )
    for path in values_files:
        command += ["-f", str(path)]
    for assignment in set_values:
        command += ["--set", assignment]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed: {result.stderr}")
    return result.stdout


def parse(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def render(binaries: None) -> Render:
    """Render the chart with values files and ``--set`` assignments into manifests."""

    def _render(*values_files: Path, set_values: tuple[str, ...] = ()) -> list[Manifest]:
        return parse(template(*values_files, set_values=set_values))

    return _render


@pytest.fixture(scope="session")
def defaults(render: Render) -> list[Manifest]:
    return render()


def scenario_files() -> list[Path]:
    """Values files of the documented options (tests/unit/chart/scenarios/*.yaml)."""
    return sorted(SCENARIOS.glob("*.yaml"))


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> dict[str, Manifest]:
    """The pod spec of every workload, by "<Kind>/<name>"."""
    specs = {}
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "DaemonSet", "Job"}:
            key = f"{manifest['kind']}/{manifest['metadata']['name']}"
            specs[key] = manifest["spec"]["template"]["spec"]
    return specs
