"""`kubetee enclave build --image` with the real Docker engine: an enclave image is built,
runs its workload after the runtime's checks, and refuses an attacker's rebuild.

The runtime image is the KubeTEE image (`docker build -t kubetee/kubetee:0.1.0 .`) with
this checkout's packages laid over it, so the test runs the code under test. Containers
run with `--network none`; no registry is needed (every base image is local).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetee.demo.kind_access import build_local_image
from kubetee.image.cli import DEFAULT_TAG
from tests.e2e.conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.kind]

# The image the kind suite builds too (`kubetee image build`'s default tag).
RUNTIME_BASE = DEFAULT_TAG
EXAMPLE_APP = REPO_ROOT / "deploy" / "examples" / "enclave-app"
SUFFIX = str(os.getpid())
RUNTIME = f"kubetee-e2e/runtime:{SUFFIX}"
BASE = f"kubetee-e2e/enclave-app-base:{SUFFIX}"
ENCLAVE = f"kubetee-e2e/enclave-app:{SUFFIX}"


def docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _engine_problem() -> str | None:
    """Why the Docker engine cannot be used here, or None."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    if docker("info", timeout=30).returncode != 0:
        return "the Docker engine is not running"
    return None


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}: {result.stderr[-3000:]}"
    return result.stdout


def _kubetee(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetee.cli", *args],
        capture_output=True, text=True, timeout=900, check=False, cwd=REPO_ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runtime_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    problem = _engine_problem()
    if problem is not None:
        pytest.fail(f"{problem}: make kind-up sets up the Docker engine (make test does)")
    if docker("image", "inspect", RUNTIME_BASE, timeout=30).returncode != 0:
        # A fresh machine has none until the kind suite builds it: built here the same way
        # (the kind suite's build then reuses its layers).
        build_local_image(RUNTIME_BASE)
    where = "import kubetee, os; print(os.path.dirname(os.path.dirname(kubetee.__file__)))"
    run = ["run", "--rm", "--network", "none", "--entrypoint", "python3", RUNTIME_BASE]
    site = _ok(docker(*run, "-c", where)).strip()
    context = tmp_path_factory.mktemp("runtime")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "operator" / "kubetee", context / "kubetee", ignore=ignore)
    shutil.copytree(REPO_ROOT / "enclave_runtime", context / "enclave_runtime", ignore=ignore)
    (context / "Dockerfile").write_text(
        f"FROM {RUNTIME_BASE}\nUSER 0\n"
        f"COPY kubetee/ {site}/kubetee/\nCOPY enclave_runtime/ {site}/enclave_runtime/\n"
        "USER 65532:65532\n"
    )
    _ok(docker("build", "--tag", RUNTIME, str(context)))
    try:
        yield RUNTIME
    finally:
        docker("rmi", "--force", RUNTIME, BASE, ENCLAVE)


def _wait_logs(container: str, text: str, within: float = 60) -> str:
    deadline = time.monotonic() + within
    while True:
        result = docker("logs", container)
        logs = result.stdout + result.stderr
        if text in logs or time.monotonic() > deadline:
            return logs
        time.sleep(0.5)


def test_an_image_is_wrapped_runs_checked_and_refuses_a_rebuilt_program(
    runtime_image: str, tmp_path: Path
) -> None:
    # The workload as an ordinary image (on a local base: no registry here).
    base_context = tmp_path / "base"
    shutil.copytree(EXAMPLE_APP / "app", base_context / "app")
    (base_context / "Dockerfile").write_text(f"FROM {RUNTIME_BASE}\nCOPY app/ /app/\n")
    _ok(docker("build", "--tag", BASE, str(base_context)))

    enclave_dir = tmp_path / "enclave"
    _ok(_kubetee(
        "enclave", "init", "--dir", str(enclave_dir), "--image", BASE,
        "--entrypoint", "app/server.py", "--isv-prod-id", "1", "--isv-svn", "2",
    ))  # fmt: skip
    built = _kubetee(
        "enclave", "build", "--dir", str(enclave_dir), "--sample-key", "--image", BASE,
        "--tag", ENCLAVE, "--runtime-image", runtime_image, "--context", str(tmp_path / "ctx"),
    )  # fmt: skip
    identity = json.loads(_ok(built).strip().splitlines()[-1])
    assert "[3/3] docker build" in built.stderr
    labels = json.loads(
        _ok(docker("image", "inspect", "--format", "{{json .Config.Labels}}", ENCLAVE))
    )
    assert labels["io.kubetee.enclave.mrenclave"] == identity["mrenclave"]

    container = _ok(docker("run", "--detach", "--network", "none", ENCLAVE)).strip()
    try:
        logs = _wait_logs(container, "serving without a secret")
        assert f"EINIT passed: MRENCLAVE {identity['mrenclave']}" in logs
        assert "serving without a secret (not attested)" in logs
    finally:
        docker("rm", "--force", container)

    # An attacker changes one byte of the program inside the enclave image, same tag.
    program = (EXAMPLE_APP / "app" / "server.py").read_bytes()
    attack = tmp_path / "attack"
    attack.mkdir()
    (attack / "server.py").write_bytes(program.replace(b"PORT = 8080", b"PORT = 8081"))
    (attack / "Dockerfile").write_text(
        f"FROM {ENCLAVE}\nCOPY server.py /kubetee/enclave/root/app/server.py\n"
    )
    _ok(docker("build", "--tag", ENCLAVE, str(attack)))
    refused = docker("run", "--rm", "--network", "none", ENCLAVE, timeout=120)
    assert refused.returncode == 5
    assert "trusted file 'app/server.py' was modified" in refused.stderr + refused.stdout
    assert "starting the workload" not in refused.stderr + refused.stdout

    # Rebuilt from a changed base image, the enclave measures differently.
    (base_context / "app" / "server.py").write_bytes(
        program.replace(b"PORT = 8080", b"PORT = 8081")
    )
    _ok(docker("build", "--tag", BASE, str(base_context)))
    rebuilt = _kubetee(
        "enclave", "build", "--dir", str(enclave_dir), "--sample-key", "--image", BASE,
        "--tag", ENCLAVE, "--runtime-image", runtime_image, "--context", str(tmp_path / "ctx2"),
    )  # fmt: skip
    assert json.loads(_ok(rebuilt).strip().splitlines()[-1])["mrenclave"] != identity["mrenclave"]
