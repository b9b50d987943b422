"""Enclave runtime pieces that need no service: settings, identity, delivery, probe."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from enclave_runtime.runtime import delivery
from enclave_runtime.runtime.enclave import identity_of, load_signer
from enclave_runtime.runtime.errors import RuntimeConfigError
from enclave_runtime.runtime.marker import started_marker
from enclave_runtime.runtime.probe import marker_dir_from_env, probe
from enclave_runtime.runtime.requests import REATTEST_ANNOTATION, read_annotation
from enclave_runtime.runtime.settings import EnclaveConfig, SecretSpec, load_settings

CONFIG = {
    "enclaveContainer": {"namespace": "shop", "name": "payments"},
    "epcMiB": 64,
    "debug": False,
    "heapMiB": None,
    "threads": 4,
    "isvProdId": 7,
    "isvSvn": 3,
    "files": [{"path": "app.py", "content": "print(1)\n"}],
    "secrets": [{"name": "db", "file": "db/password"}, {"name": "api", "env": "API_KEY"}],
    "secretsDir": "/run/kubetee/secrets",
}
SPECS = [SecretSpec(name="db", file="db/password"), SecretSpec(name="api", env="API_KEY")]


def test_settings_read_the_operators_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETEE_ENCLAVE_CONFIG", json.dumps(CONFIG))
    monkeypatch.setenv("KUBETEE_POD_NAME", "payments-1")
    monkeypatch.setenv("KUBETEE_POD_UID", "uid-1")
    monkeypatch.setenv("KUBETEE_ATTESTATION_URL", "https://kbs.kubetee-system.svc:8443")
    monkeypatch.setenv("KUBETEE_QUOTING_SOCKET", "/var/run/kubetee/q.sock")

    settings = load_settings()

    assert (settings.pod_namespace, settings.enclave_container) == ("shop", "payments")
    assert [s.name for s in settings.secrets] == ["db", "api"]
    assert settings.delivery_dir == Path("/run/kubetee/secrets")
    assert settings.marker_dir == settings.delivery_dir
    assert settings.quoting_socket == Path("/var/run/kubetee/q.sock")


def test_missing_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KUBETEE_ENCLAVE_CONFIG", "KUBETEE_POD_NAME", "KUBETEE_POD_UID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBETEE_ATTESTATION_URL", "http://plain")

    with pytest.raises(RuntimeConfigError) as error:
        load_settings()

    for name in ("ENCLAVE_CONFIG", "POD_NAME", "POD_UID", "ATTESTATION_URL"):
        assert f"KUBETEE_{name}" in str(error.value)
    assert error.value.exit_code == 2


def test_malformed_json_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETEE_ENCLAVE_CONFIG", "{not json")
    with pytest.raises(RuntimeConfigError, match="malformed"):
        load_settings()


def test_measurement_covers_files_and_layout_but_not_svn(tmp_path: Path) -> None:
    signer = load_signer(None)
    base = identity_of(EnclaveConfig.model_validate(CONFIG), None, signer)
    newer = identity_of(EnclaveConfig.model_validate({**CONFIG, "isvSvn": 4}), None, signer)
    edited = identity_of(
        EnclaveConfig.model_validate({**CONFIG, "files": [{"path": "app.py", "content": "x"}]}),
        None,
        signer,
    )
    bigger = identity_of(EnclaveConfig.model_validate({**CONFIG, "threads": 8}), None, signer)

    assert newer.mrenclave == base.mrenclave
    assert newer.isv_svn == 4
    assert len({base.mrenclave, edited.mrenclave, bigger.mrenclave}) == 3
    assert base.mrsigner == newer.mrsigner


def test_mounted_enclave_files_are_read_and_missing_ones_named(tmp_path: Path) -> None:
    config = EnclaveConfig.model_validate(
        {**CONFIG, "files": [{"path": "model.bin", "mountedAt": str(tmp_path / "model.bin")}]}
    )
    with pytest.raises(RuntimeConfigError, match=r"model\.bin"):
        identity_of(config, None, load_signer(None))
    (tmp_path / "model.bin").write_bytes(b"weights")
    mounted = identity_of(config, None, load_signer(None))
    relocated = identity_of(config, tmp_path, load_signer(None))
    assert mounted.mrenclave == relocated.mrenclave


def test_secrets_are_delivered_read_only_and_env_as_a_sourceable_file(tmp_path: Path) -> None:
    delivery.deliver(tmp_path, SPECS, {"db": b"pa$$ 'word'", "api": b"k3y"})

    password = tmp_path / "db" / "password"
    assert password.read_bytes() == b"pa$$ 'word'"
    assert stat.S_IMODE(password.stat().st_mode) == 0o400
    env_file = tmp_path / delivery.ENV_FILE
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o400
    sourced = subprocess.run(
        ["sh", "-c", f'. "{env_file}" && printf %s "$API_KEY"'],
        capture_output=True,
        check=True,
    )
    assert sourced.stdout == b"k3y"

    delivery.deliver(tmp_path, SPECS, {"db": b"rotated", "api": b"k3y2"})
    assert password.read_bytes() == b"rotated"

    delivery.wipe(tmp_path, SPECS)
    assert not password.exists()
    assert not env_file.exists()


def test_env_secret_values_are_shell_quoted(tmp_path: Path) -> None:
    delivery.deliver(tmp_path, [SPECS[1]], {"api": b"$(touch pwned); `id`"})
    sourced = subprocess.run(
        ["sh", "-c", f'cd "{tmp_path}" && . ./{delivery.ENV_FILE} && printf %s "$API_KEY"'],
        capture_output=True,
        check=True,
    )
    assert sourced.stdout == b"$(touch pwned); `id`"
    assert not (tmp_path / "pwned").exists()


def test_secret_paths_cannot_leave_the_volume(tmp_path: Path) -> None:
    with pytest.raises(RuntimeConfigError, match="would leave"):
        delivery.deliver(tmp_path, [SecretSpec(name="x", file="../escape")], {"x": b"v"})


def test_binary_secret_cannot_go_to_env(tmp_path: Path) -> None:
    with pytest.raises(RuntimeConfigError, match="not UTF-8"):
        delivery.deliver(tmp_path, [SPECS[1]], {"api": b"\xff\xfe"})


def test_probe_passes_only_with_the_marker(tmp_path: Path) -> None:
    assert probe(tmp_path) == (False, "not attested yet")
    started_marker(tmp_path).write_text(json.dumps({"mrenclave": "ab" * 32}))
    passed, message = probe(tmp_path)
    assert passed
    assert "abababab" in message


def test_probe_finds_the_marker_dir_like_the_runtime() -> None:
    config = json.dumps({"secretsDir": "/run/x"})
    assert marker_dir_from_env({"KUBETEE_ENCLAVE_CONFIG": config}) == Path("/run/x")
    assert marker_dir_from_env(
        {"KUBETEE_ENCLAVE_CONFIG": config, "KUBETEE_SECRETS_DIR": "/s"}
    ) == Path("/s")
    assert marker_dir_from_env({"KUBETEE_STATE_DIR": "/t", "KUBETEE_SECRETS_DIR": "/s"}) == Path(
        "/t"
    )


def test_reattestation_request_is_read_from_downward_api_annotations(tmp_path: Path) -> None:
    (tmp_path / "annotations").write_text(
        'kubetee.io/attested-policy="0123"\nkubetee.io/reattest-requested="abcd@1700000000"\n'
    )
    assert read_annotation(tmp_path, REATTEST_ANNOTATION) == "abcd@1700000000"
    assert read_annotation(tmp_path, "missing") is None
    assert read_annotation(tmp_path / "absent", REATTEST_ANNOTATION) is None


def test_root_relocates_every_container_path(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {**CONFIG, "files": [{"path": "m.bin", "mountedAt": "/run/kubetee/enclave/m.bin"}]}
    monkeypatch.setenv("KUBETEE_ENCLAVE_CONFIG", json.dumps(config))
    monkeypatch.setenv("KUBETEE_POD_NAME", "payments-1")
    monkeypatch.setenv("KUBETEE_POD_UID", "uid-1")
    monkeypatch.setenv("KUBETEE_ATTESTATION_URL", "https://kbs:8443")
    monkeypatch.setenv("KUBETEE_ATTESTATION_CA", "/run/kubetee/ca/ca.crt")
    monkeypatch.setenv("KUBETEE_QUOTING_SOCKET", "/var/run/kubetee/q.sock")
    monkeypatch.setenv("KUBETEE_PODINFO_DIR", "/run/kubetee/podinfo")
    monkeypatch.setenv("KUBETEE_ROOT", "/tmp/pod-root")

    settings = load_settings()

    assert settings.delivery_dir == Path("/tmp/pod-root/run/kubetee/secrets")
    assert settings.attestation_ca == Path("/tmp/pod-root/run/kubetee/ca/ca.crt")
    assert settings.quoting_socket == Path("/tmp/pod-root/var/run/kubetee/q.sock")
    assert settings.podinfo_dir == Path("/tmp/pod-root/run/kubetee/podinfo")
    assert settings.enclave_config.files[0].mounted_at == "/tmp/pod-root/run/kubetee/enclave/m.bin"
    assert marker_dir_from_env(
        {"KUBETEE_ROOT": "/tmp/pod-root", "KUBETEE_ENCLAVE_CONFIG": json.dumps(config)}
    ) == Path("/tmp/pod-root/run/kubetee/secrets")
