"""Operator settings: KUBETEE_* variables, validated once with a message naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetee.cli import main
from kubetee.settings import SettingsError, load_settings


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETEE_RUNTIME_IMAGE", "registry/runtime:1")
    monkeypatch.setenv("KUBETEE_WORKERS", "4")
    settings = load_settings(workers=8, attestation_url=None)
    assert settings.runtime_image == "registry/runtime:1"
    assert settings.workers == 8
    assert settings.attestation_url is None


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETEE_STATUS_DELAY", "-1")
    with pytest.raises(SettingsError, match="KUBETEE_STATUS_DELAY"):
        load_settings()


def test_cli_reports_bad_settings_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBETEE_WORKERS", "0")
    assert main(["operator"]) == 2
    assert "KUBETEE_WORKERS" in capsys.readouterr().err


def test_crds_check_detects_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds", "--write", str(tmp_path)]) == 0
    assert main(["crds", "--check", str(tmp_path)]) == 0
    (tmp_path / "epcpools.kubetee.io.yaml").write_text("stale", encoding="utf-8")
    assert main(["crds", "--check", str(tmp_path)]) == 1
    assert "epcpools.kubetee.io" in capsys.readouterr().err
