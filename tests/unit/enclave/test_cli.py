"""``kubetee enclave``: keygen, init, build, measure, run and bundle as a user runs them."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest
import yaml

from enclave_runtime.enclave.keys import sample_mrsigner
from enclave_runtime.enclave.manifest import MANIFEST_FILE, SIGSTRUCT_FILE
from enclave_runtime.sgx.sigstruct import Sigstruct
from kubetee.cli import main

from .builders import HELPER, write_app


@pytest.fixture
def enclave_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "enc"
    write_app(directory)
    monkeypatch.delenv("KUBETEE_ATTESTATION_URL", raising=False)
    monkeypatch.delenv("KUBETEE_ENCLAVE_CONFIG", raising=False)
    monkeypatch.delenv("KUBETEE_ROOT", raising=False)
    return directory


def _identity(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    document: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return document


def _init(directory: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "enclave", "init", "--dir", str(directory), "--entrypoint", "app/server.py",
            "--trusted", "app", "--arg", str(out), "--isv-prod-id", "7", "--isv-svn", "3",
            *extra,
        ]
    )  # fmt: skip


def test_keygen_init_build_measure_run(
    tmp_path: Path, enclave_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "author.pem"
    assert main(["enclave", "keygen", "--out", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert main(["enclave", "keygen", "--out", str(key)]) == 2  # never overwritten
    out = tmp_path / "out.txt"
    assert _init(enclave_dir, out) == 0
    manifest = json.loads((enclave_dir / MANIFEST_FILE).read_text())
    assert [f["path"] for f in manifest["trustedFiles"]] == ["app/helper.txt", "app/server.py"]
    capsys.readouterr()

    assert main(["enclave", "build", "--dir", str(enclave_dir), "--key", str(key)]) == 0
    built = _identity(capsys)
    sig = Sigstruct.parse((enclave_dir / SIGSTRUCT_FILE).read_bytes())
    assert built["mrenclave"] == sig.enclave_hash.hex()
    assert built["mrsigner"] == sig.mrsigner.hex()
    assert built["sampleKey"] is False

    assert main(["enclave", "measure", "--dir", str(enclave_dir)]) == 0
    assert _identity(capsys) == built

    assert main(["enclave", "run", "--dir", str(enclave_dir), "--private-dir", str(tmp_path)]) == 0
    empty = hashlib.sha256(b"").hexdigest()
    assert out.read_text() == f"{empty} {empty} {HELPER}"  # ran, without secrets
    assert list(tmp_path.glob("enclave-*")) == []  # the private directory is gone


def test_run_refuses_a_modified_program(
    tmp_path: Path, enclave_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.txt"
    assert _init(enclave_dir, out) == 0
    assert main(["enclave", "build", "--dir", str(enclave_dir), "--sample-key"]) == 0
    assert "sample key" in capsys.readouterr().err
    program = enclave_dir / "app" / "server.py"
    program.write_bytes(program.read_bytes().replace(b"sha256", b"sha224", 1))
    code = main(["enclave", "run", "--dir", str(enclave_dir), "--private-dir", str(tmp_path)])
    assert code == 5
    assert not out.exists()


def test_build_reports_changed_files_and_sample_key(
    tmp_path: Path, enclave_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _init(enclave_dir, tmp_path / "out") == 0
    (enclave_dir / "app" / "helper.txt").write_text("changed\n")
    assert main(["enclave", "build", "--dir", str(enclave_dir), "--sample-key"]) == 0
    captured = capsys.readouterr()
    assert "app/helper.txt changed" in captured.err
    identity = json.loads(captured.out.strip().splitlines()[-1])
    assert identity["sampleKey"] is True
    assert identity["mrsigner"] == sample_mrsigner().hex()


def test_bad_input_is_a_clear_refusal(
    tmp_path: Path, enclave_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enclave", "build", "--dir", str(tmp_path / "none"), "--sample-key"]) == 2
    assert "kubetee enclave init" in capsys.readouterr().err
    assert _init(enclave_dir, tmp_path / "out", "--trusted", "missing") == 5
    assert "'missing' does not exist" in capsys.readouterr().err
    assert _init(enclave_dir, tmp_path / "out", "--heap-mib", "0") == 2
    assert "heapMiB" in capsys.readouterr().err
    assert _init(enclave_dir, tmp_path / "out") == 0
    assert _init(enclave_dir, tmp_path / "out") == 2
    assert "--force" in capsys.readouterr().err
    (enclave_dir / MANIFEST_FILE).write_text('{"entrypoint": "app/server.py"}')
    assert main(["enclave", "build", "--dir", str(enclave_dir), "--sample-key"]) == 2
    assert "trustedFiles" in capsys.readouterr().err
    assert main(["enclave", "run", "--dir", str(enclave_dir)]) == 2


def test_bundle_and_measure_from_an_enclave_container_file(
    tmp_path: Path, enclave_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _init(enclave_dir, tmp_path / "out") == 0
    assert main(["enclave", "build", "--dir", str(enclave_dir), "--sample-key"]) == 0
    built = _identity(capsys)
    assert main(["enclave", "bundle", "--dir", str(enclave_dir), "--name", "web-enclave"]) == 0
    configmap = yaml.safe_load(capsys.readouterr().out)
    assert configmap["kind"] == "ConfigMap"
    program = (enclave_dir / "app" / "server.py").read_bytes()
    key = "sha256-" + hashlib.sha256(program).hexdigest()
    assert base64.b64decode(configmap["binaryData"][key]) == program

    # The bundle, mounted as a kubelet mounts a ConfigMap, runs.
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    (mounted / MANIFEST_FILE).write_text(configmap["data"][MANIFEST_FILE])
    for name, value in configmap["binaryData"].items():
        (mounted / name).write_bytes(base64.b64decode(value))
    code = main(["enclave", "run", "--bundle", str(mounted), "--private-dir", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "out").read_text().endswith(HELPER)

    ec = {
        "apiVersion": "kubetee.io/v1alpha1",
        "kind": "EnclaveContainer",
        "metadata": {"name": "web"},
        "spec": {"enclave": {"bundle": {"name": "web-enclave"}}},
    }
    manifests = tmp_path / "web.yaml"
    manifests.write_text(yaml.safe_dump_all([configmap, ec]))
    assert main(["enclave", "measure", "--enclave-container", str(manifests)]) == 0
    assert _identity(capsys)["mrenclave"] == built["mrenclave"]


def test_in_a_pod_the_runtime_never_runs_the_workload_unattested(
    tmp_path: Path, enclave_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.txt"
    assert _init(enclave_dir, out) == 0
    assert main(["enclave", "build", "--dir", str(enclave_dir), "--sample-key"]) == 0
    # The operator's environment, without an attestation service to attest to.
    monkeypatch.setenv(
        "KUBETEE_ENCLAVE_CONFIG", json.dumps({"enclaveContainer": {"namespace": "a", "name": "b"}})
    )
    monkeypatch.setenv("KUBETEE_POD_NAME", "b-1")
    monkeypatch.setenv("KUBETEE_POD_UID", "uid")
    code = main(["enclave", "run", "--dir", str(enclave_dir), "--private-dir", str(tmp_path)])
    assert code == 2
    assert not out.exists()
