"""The Docker engine checks: each bad environment gets a message saying what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubetee.cluster.errors import ClusterError
from kubetee.kindcluster.docker import (
    WRAPPER_RUNTIME,
    Docker,
    bounding_capabilities,
    check_privileged_runtime,
    engine_error,
    has_sys_resource,
)

ALL_CAPS = 0x000001FFFFFFFFFF
WITHOUT_SYS_RESOURCE = 0x000001FFFEFFFFFF  # as in these VMs


def test_bounding_set_is_read_from_proc_status(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nCapEff:\t0000000000000000\nCapBnd:\t000001fffeffffff\n")
    caps = bounding_capabilities(status)
    assert caps == WITHOUT_SYS_RESOURCE
    assert not has_sys_resource(caps)
    assert has_sys_resource(ALL_CAPS)


def test_missing_capability_without_the_wrapper_is_refused_with_the_remedy() -> None:
    with pytest.raises(ClusterError, match="CAP_SYS_RESOURCE") as info:
        check_privileged_runtime("runc", WITHOUT_SYS_RESOURCE)
    assert "setup-docker-engine.sh" in str(info.value)
    assert "unable to apply caps" in str(info.value)


def test_wrapper_runtime_or_full_capabilities_pass() -> None:
    check_privileged_runtime(WRAPPER_RUNTIME, WITHOUT_SYS_RESOURCE)
    check_privileged_runtime("runc", ALL_CAPS)


def test_permission_denied_says_to_run_as_root_or_join_docker_group() -> None:
    error = engine_error(
        "permission denied while trying to connect to the Docker daemon socket at "
        "unix:///var/run/docker.sock"
    )
    assert "root" in str(error)
    assert "'docker' group" in str(error)


def test_engine_not_running_points_at_the_setup_script() -> None:
    error = engine_error("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")
    assert "setup-docker-engine.sh" in str(error)
    assert "Cannot connect" in str(error)


def test_no_docker_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match="'docker' command is not on PATH"):
        Docker()


def _fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_check_engine_refuses_an_engine_that_cannot_start_kind_nodes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_docker(tmp_path, monkeypatch)

    def answer(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, '{"DefaultRuntime": "runc"}', "")

    with pytest.raises(ClusterError, match="default runtime is 'runc'"):
        Docker(answer).check_engine(capabilities=WITHOUT_SYS_RESOURCE)


def test_check_engine_reports_what_docker_said(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_docker(tmp_path, monkeypatch)

    def answer(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 1, "", "Cannot connect to the Docker daemon")

    with pytest.raises(ClusterError, match="does not answer 'docker info'"):
        Docker(answer).check_engine(capabilities=ALL_CAPS)
