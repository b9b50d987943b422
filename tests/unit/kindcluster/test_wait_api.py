"""A reused cluster whose apiserver is still starting is waited for, not given up on."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubetee.cluster.errors import ClusterError
from kubetee.kindcluster import cluster as cluster_module
from kubetee.kindcluster.cluster import KindCluster

# What a restarted kind control plane answered, in order (from a real run).
STARTING = [
    (1, "", "Unable to connect to the server: EOF"),
    (1, "", 'Error from server (Forbidden): User "kubernetes-admin" cannot get path "/readyz"'),
    (1, "", "[-]poststarthook/rbac/bootstrap-roles failed: reason withheld"),
]


def _answers(readyz: list[tuple[int, str, str]], can_i: list[str]) -> Any:
    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        if args[-3:] == ["get", "--raw", "/readyz"]:
            code, out, err = readyz.pop(0) if readyz else (0, "ok", "")
            return subprocess.CompletedProcess(args, code, out, err)
        if args[-4:] == ["auth", "can-i", "list", "nodes"]:
            answer = can_i.pop(0) if can_i else "yes"
            return subprocess.CompletedProcess(args, 0, answer + "\n", "")
        raise AssertionError(f"unexpected command {args}")

    return run


@pytest.fixture
def kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> KindCluster:
    monkeypatch.setattr(cluster_module, "state_root", lambda: tmp_path / "state")
    monkeypatch.setattr(cluster_module.time, "sleep", lambda _: None)
    cluster = KindCluster("kubetee")
    cluster.paths.log_dir.mkdir(parents=True, exist_ok=True)
    return cluster


def test_waits_through_refusals_until_ready_and_authorized(
    kind: KindCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    readyz = list(STARTING)
    can_i = ["no"]  # ready, but the RBAC cache not yet filled
    monkeypatch.setattr(cluster_module.subprocess, "run", _answers(readyz, can_i))
    kind._wait_api(["kubectl"])
    assert readyz == []
    assert can_i == []
    assert "bootstrap-roles" in (kind.paths.log_dir / "wait-apiserver.log").read_text()


def test_gives_up_at_the_deadline_with_what_to_do(
    kind: KindCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    never = [(1, "", "Unable to connect to the server: EOF")] * 1000
    monkeypatch.setattr(cluster_module.subprocess, "run", _answers(never, []))
    with pytest.raises(ClusterError, match="kubetee kind down"):
        kind._wait_api(["kubectl"], timeout=0.0)
