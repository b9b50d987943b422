"""A kind cluster whose node containers stopped (its Docker engine restarted) is recreated."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubetee.kindcluster import cluster as cluster_module
from kubetee.kindcluster.cluster import KindCluster

NODES = ["kubetee-control-plane", "kubetee-worker", "kubetee-worker2"]


def _fake_run(running: dict[str, bool]) -> Any:
    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        if args[1:3] == ["get", "nodes"]:
            return subprocess.CompletedProcess(args, 0, "\n".join(NODES) + "\n", "")
        if args[:2] == ["docker", "inspect"]:
            lines = [f"/{n} {str(running[n]).lower()}" for n in args[4:] if n in running]
            return subprocess.CompletedProcess(args, 0, "\n".join(lines) + "\n", "")
        raise AssertionError(f"unexpected command {args}")

    return run


def test_running_nodes_are_not_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module.subprocess, "run", _fake_run(dict.fromkeys(NODES, True)))
    assert KindCluster("kubetee").stopped_nodes() == []


def test_stopped_and_vanished_nodes_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    running = {"kubetee-control-plane": True, "kubetee-worker": False}  # worker2 is gone
    monkeypatch.setattr(cluster_module.subprocess, "run", _fake_run(running))
    assert KindCluster("kubetee").stopped_nodes() == ["kubetee-worker", "kubetee-worker2"]


def test_up_recreates_a_cluster_with_stopped_nodes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[str] = []
    kind = KindCluster("kubetee")
    monkeypatch.setattr(kind, "build", lambda **_: "node-image")
    monkeypatch.setattr(kind, "exists", lambda: "delete" not in calls)
    monkeypatch.setattr(kind, "stopped_nodes", lambda: ["kubetee-worker"])
    monkeypatch.setattr(kind, "delete", lambda: calls.append("delete") or True)
    monkeypatch.setattr(kind, "_create", lambda config, image: calls.append(f"create {image}"))
    monkeypatch.setattr(kind, "_wait_ready", lambda: calls.append("wait"))
    config = tmp_path / "kind.yaml"
    config.write_text(
        (Path(cluster_module.__file__).parents[3] / "deploy/kind/kind-config.yaml").read_text()
    )
    kind.up(config)
    assert calls == ["delete", "create node-image", "wait"]
