"""Wrapping an image: the files copied out of it, the build context, the Dockerfile.

Docker is replaced by a stand-in that serves an image's files as `docker cp` does (a tar
stream) and records the build; tests/e2e/test_enclave_image.py builds for real.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from enclave_runtime.enclave import image
from enclave_runtime.enclave.loader import check_launch, from_directory
from enclave_runtime.enclave.manifest import MANIFEST_FILE, SIGSTRUCT_FILE, load_manifest
from kubetee.cli import main

from .builders import HELPER, WORKLOAD


class FakeDocker:
    """`docker create/cp/rm/build` over an image given as {path: content}."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.calls: list[list[str]] = []
        self.removed: list[str] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
        self.calls.append(list(argv))
        out = b""
        if argv[0] == "create":
            out = b"c0ffee\n"
        elif argv[0] == "cp":
            path = argv[1].split(":", 1)[1].lstrip("/")
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                for name, content in self.files.items():
                    if name == path or name.startswith(path + "/"):
                        info = tarfile.TarInfo(name[len(path) - len(path.split("/")[-1]) :])
                        info.size = len(content)
                        tar.addfile(info, io.BytesIO(content))
            out = buffer.getvalue()
        elif argv[0] == "rm":
            self.removed.append(argv[-1])
        return subprocess.CompletedProcess(["docker", *argv], 0, out, b"")


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    docker = FakeDocker({"app/server.py": WORKLOAD.encode(), "app/helper.txt": HELPER.encode()})
    monkeypatch.setattr(image, "docker", docker)
    return docker


def test_the_dockerfile_puts_the_signed_enclave_on_the_runtime() -> None:
    text = image.dockerfile("kubetee/kubetee:0.1.0", "web:1", mrenclave="aa", mrsigner="bb")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines[0] == "FROM kubetee/kubetee:0.1.0"
    assert "COPY --chown=0:0 root/ /kubetee/enclave/root/" in lines
    assert f"COPY --chown=0:0 {MANIFEST_FILE} {SIGSTRUCT_FILE} /kubetee/enclave/" in lines
    entrypoint = next(line for line in lines if line.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == [
        "kubetee", "enclave", "run", "--dir", "/kubetee/enclave", "--root", "/kubetee/enclave/root",
    ]  # fmt: skip
    label = next(line for line in lines if line.startswith("LABEL "))
    assert 'io.kubetee.enclave.mrenclave="aa"' in label
    assert 'io.kubetee.enclave.base="web:1"' in label


def test_init_and_build_from_an_image_sign_exactly_what_the_image_holds(
    tmp_path: Path, fake_docker: FakeDocker, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "web"
    context = tmp_path / "context"
    assert main([
        "enclave", "init", "--dir", str(directory), "--image", "web:1",
        "--entrypoint", "app/server.py", "--trusted", "app",
    ]) == 0  # fmt: skip
    assert main([
        "enclave", "build", "--dir", str(directory), "--sample-key", "--image", "web:1",
        "--tag", "web-enclave:1", "--context", str(context),
    ]) == 0  # fmt: skip
    built = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert (context / "root" / "app" / "server.py").read_text() == WORKLOAD
    signed = check_launch(
        load_manifest(context / MANIFEST_FILE),
        (context / SIGSTRUCT_FILE).read_bytes(),
        from_directory(context / "root"),
    )
    assert signed.enclave_hash.hex() == built["mrenclave"]
    assert f'mrenclave="{built["mrenclave"]}"' in (context / "Dockerfile").read_text()
    assert fake_docker.calls[-1] == ["build", "--tag", "web-enclave:1", str(context)]
    assert fake_docker.removed == ["c0ffee", "c0ffee"]  # every helper container removed
    # The enclave directory keeps the signed manifest, so `measure` shows the same.
    assert (
        main(["enclave", "measure", "--dir", str(directory), "--root", str(context / "root")]) == 0
    )
    assert json.loads(capsys.readouterr().out)["mrenclave"] == built["mrenclave"]


def test_a_changed_program_in_the_image_changes_mrenclave(
    tmp_path: Path, fake_docker: FakeDocker, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "web"
    assert main([
        "enclave", "init", "--dir", str(directory), "--image", "web:1",
        "--entrypoint", "app/server.py",
    ]) == 0  # fmt: skip
    build = ["enclave", "build", "--dir", str(directory), "--sample-key", "--image", "web:1",
             "--tag", "web-enclave:1", "--context", str(tmp_path / "ctx")]  # fmt: skip
    assert main(build) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mrenclave"]
    fake_docker.files["app/server.py"] = WORKLOAD.replace("1]", "0]").encode()  # same tag
    assert main(build) == 0
    captured = capsys.readouterr()
    assert "app/server.py changed" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["mrenclave"] != first


def test_a_file_missing_from_the_image_is_a_clear_refusal(
    tmp_path: Path, fake_docker: FakeDocker, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([
        "enclave", "init", "--dir", str(tmp_path / "web"), "--image", "web:1",
        "--entrypoint", "app/missing.py",
    ])  # fmt: skip
    assert code == 6
    assert "web:1 lacks the trusted file(s) ['app/missing.py']" in capsys.readouterr().err
    assert fake_docker.removed == ["c0ffee"]


def test_build_without_docker_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker on it
    code = main([
        "enclave", "init", "--dir", str(tmp_path / "web"), "--image", "web:1",
        "--entrypoint", "app/server.py",
    ])  # fmt: skip
    assert code == 6
    assert "docker is not installed" in capsys.readouterr().err
