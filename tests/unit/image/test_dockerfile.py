"""The Dockerfile's structure, and its build stage reproduced without Docker.

The image itself is built by the kind suite (tests/kind); here, without a container
engine: multi-stage on one BASE_IMAGE argument (default python:3.11-slim), nothing a
classic builder lacks (no ``# syntax=`` line, which would make BuildKit contact Docker
Hub, no ``RUN --mount``), a numeric non-root USER equal to the chart's runAsUser, the
``kubetee`` entry point, that the files its build stage copies are enough to build a
complete wheel (done here with pip, on a directory holding exactly those files), and
that ``kubetee image build`` streams exactly those files as the build context.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kubetee.image.build import CA_FILE, CONTEXT, write_context

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO_ROOT / "Dockerfile"
CHART = REPO_ROOT / "charts" / "kubetee"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, with continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.removesuffix("\\").strip()
        if stripped.endswith("\\"):
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return found


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in parsed:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


@pytest.fixture(scope="module")
def parsed() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


def test_is_multi_stage_on_one_base_defaulting_to_slim_python(parsed: list[Instruction]) -> None:
    all_stages = stages(parsed)
    assert len(all_stages) >= 2
    build, final = all_stages[0][0].arguments.split(), all_stages[-1][0].arguments.split()
    assert build == ["${BASE_IMAGE}", "AS", "build"]
    assert final == ["${BASE_IMAGE}"]
    global_args = [i.arguments for i in parsed[: parsed.index(all_stages[0][0])]]
    assert global_args == ["BASE_IMAGE=python:3.11-slim"]
    # The final stage takes only the built environment from the build stage, never the
    # source tree (nor the CA bundle the build stage may get).
    copies = [i.arguments.split() for i in all_stages[-1] if i.keyword in {"COPY", "ADD"}]
    assert copies == [["--from=build", "/opt/kubetee", "/opt/kubetee"]]


def test_builds_with_the_classic_builder_and_pulls_nothing_else() -> None:
    text = DOCKERFILE.read_text()
    assert not text.startswith("# syntax"), "a syntax line makes BuildKit pull a frontend"
    assert "--mount" not in text
    assert "# syntax=" not in text.splitlines()[0]


def test_runs_as_the_non_root_uid_the_chart_expects(parsed: list[Instruction]) -> None:
    final = stages(parsed)[-1]
    users = [i.arguments for i in final if i.keyword == "USER"]
    assert users, "the final stage has no USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) != 0
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]
    # The USER is the last word: nothing after it runs as root.
    assert [i.keyword for i in final].index("USER") > max(
        n for n, i in enumerate(final) if i.keyword == "RUN"
    )


def test_entry_point_is_the_kubetee_command(parsed: list[Instruction]) -> None:
    final = stages(parsed)[-1]
    entrypoint = [json.loads(i.arguments) for i in final if i.keyword == "ENTRYPOINT"]
    assert entrypoint == [["kubetee"]]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubetee"] == "kubetee.cli:main"


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


def _copied(parsed: list[Instruction]) -> list[tuple[list[str], str]]:
    """Sources (optional ones, written as a glob such as ``pip-ca.pe[m]``, left out)."""
    copies = []
    for instruction in stages(parsed)[0]:
        if instruction.keyword == "COPY":
            words = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
            copies.append(([w for w in words[:-1] if "[" not in w], words[-1]))
    return copies


def test_the_image_build_streams_exactly_what_the_dockerfile_copies(
    parsed: list[Instruction], tmp_path: Path
) -> None:
    copied = {source for sources, _ in _copied(parsed) for source in sources}
    assert set(CONTEXT) == {"Dockerfile", *copied}
    archive = tmp_path / "context.tar"
    write_context(REPO_ROOT, archive, "-----BEGIN CERTIFICATE-----\nMIIB\n")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert tar.extractfile(CA_FILE).read().startswith(b"-----BEGIN CERTIFICATE-----")  # type: ignore[union-attr]
    assert "Dockerfile" in names
    assert "operator/kubetee/cli.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("tests", "charts", "deploy", ".git", "docs"))]
    # The optional CA bundle is what the Dockerfile's glob picks up.
    assert any(fnmatch.fnmatch(CA_FILE, w) for w in DOCKERFILE.read_text().split())


def test_build_stage_copies_what_the_wheel_needs(parsed: list[Instruction], tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for sources, destination in _copied(parsed):
        for source in sources:
            origin = REPO_ROOT / source
            target = context / (destination if destination not in {"./", "."} else source)
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, context / source)
    wheels = tmp_path / "wheels"
    # What the build stage runs (pip wheel), on exactly the copied files; --no-deps keeps
    # it to our own wheel.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(wheels),
            str(context),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = wheels.glob("kubetee-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "kubetee = kubetee.cli:main" in archive.read(entry_points).decode()
    for required in (
        "kubetee/cli.py",
        "kubetee/attestation/data/intel_sgx_root_ca.der",
        "kubetee/deviceplugin/api/deviceplugin_pb2.py",
        "enclave_runtime/runtime/data/simulation_signer.pem",
        "kubetee/py.typed",
    ):
        assert required in names, f"the image would lack {required}"
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
