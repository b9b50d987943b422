"""The Dockerfile's structure, and its build stage reproduced without Docker.

No container engine exists where the tests run, so the image itself is not built here.
What can be checked is: multi-stage, a slim Python 3.11 base, a numeric non-root USER
equal to the chart's runAsUser, the ``kubetee`` entry point, and that the files its build
stage copies are enough to build a complete wheel (done here with pip, on a directory
holding exactly those files).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

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


def test_is_multi_stage_on_slim_python(parsed: list[Instruction]) -> None:
    all_stages = stages(parsed)
    assert len(all_stages) >= 2
    build, final = all_stages[0][0].arguments.split(), all_stages[-1][0].arguments.split()
    assert build[-2:] == ["AS", "build"]
    assert final[0] == "python:${PYTHON_VERSION}-slim"
    args = {
        i.arguments.partition("=")[0]: i.arguments.partition("=")[2]
        for i in parsed
        if i.keyword == "ARG"
    }
    assert args["PYTHON_VERSION"] == "3.11"
    # The final stage takes only wheels from the build stage, never the source tree.
    assert not [i for i in all_stages[-1] if i.keyword in {"COPY", "ADD"}]
    run = " ".join(i.arguments for i in all_stages[-1] if i.keyword == "RUN")
    assert "--mount=type=bind,from=build,source=/wheels" in run
    assert "--no-index" in run


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
    copies = []
    for instruction in stages(parsed)[0]:
        if instruction.keyword == "COPY":
            words = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
            copies.append((words[:-1], words[-1]))
    return copies


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
