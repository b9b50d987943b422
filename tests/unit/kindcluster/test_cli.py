"""`kubetee kind`: refusals come before any build, and say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetee.cli import main


def test_up_with_a_missing_config_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kind", "up", "--config", str(tmp_path / "none.yaml")]) == 1
    assert "none.yaml does not exist" in capsys.readouterr().err


def test_up_with_a_config_lacking_sgx_workers_is_refused_before_building(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker, no go: nothing could be built
    config = tmp_path / "kind.yaml"
    config.write_text("kind: Cluster\nnodes:\n  - role: control-plane\n")
    assert main(["kind", "up", "--config", str(config)]) == 1
    assert "no worker labelled kubetee.io/sgx=true" in capsys.readouterr().err


def test_status_without_docker_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["kind", "status"]) == 3
    out = capsys.readouterr().out
    assert "Docker engine: not usable" in out
    assert "setup-docker-engine.sh" in out


def test_build_without_docker_fails_with_the_remedy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["kind", "build"]) == 1
    assert "setup-docker-engine.sh" in capsys.readouterr().err
