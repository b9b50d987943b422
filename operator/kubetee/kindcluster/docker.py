"""The Docker engine kind runs on: found, answering, and able to start privileged nodes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from kubetee.cluster.errors import ClusterError

SETUP_SCRIPT = "deploy/kind/setup-docker-engine.sh"
WRAPPER_RUNTIME = "kubetee-runc"  # the runtime the setup script registers
CAP_SYS_RESOURCE = 24

_SETUP_HINT = f"run 'sudo sh {SETUP_SCRIPT}' from the repository (it installs and starts one)"


def find_docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise ClusterError(
            f"The 'docker' command is not on PATH: kind needs a Docker engine; {_SETUP_HINT}."
        )
    return docker


def bounding_capabilities(status_file: Path = Path("/proc/self/status")) -> int:
    """This process's capability bounding set (what any container here can get at most)."""
    for line in status_file.read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    return ~0


def has_sys_resource(capabilities: int) -> bool:
    return bool(capabilities >> CAP_SYS_RESOURCE & 1)


def engine_error(stderr: str) -> ClusterError:
    """What to do when ``docker info`` fails, from what it said."""
    text = stderr.strip()
    if "permission denied" in text.lower():
        return ClusterError(
            "Docker refused this user (permission denied on its socket): run kubetee as root "
            f"or as a member of the 'docker' group. Docker said: {text}"
        )
    return ClusterError(
        f"The Docker engine does not answer 'docker info'; {_SETUP_HINT}. Docker said: {text}"
    )


def check_privileged_runtime(default_runtime: str, capabilities: int) -> None:
    """Privileged containers fail with "unable to apply caps" where the bounding set lacks
    CAP_SYS_RESOURCE, unless the default runtime is the setup script's wrapper dropping it."""
    if has_sys_resource(capabilities) or default_runtime == WRAPPER_RUNTIME:
        return
    raise ClusterError(
        "This machine's capability bounding set lacks CAP_SYS_RESOURCE, so Docker cannot start "
        "privileged containers such as kind nodes (runc: 'unable to apply caps'), and Docker's "
        f"default runtime is '{default_runtime}', not the '{WRAPPER_RUNTIME}' wrapper that drops "
        f"that capability; {_SETUP_HINT}."
    )


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


class Docker:
    """Thin access to the docker CLI for the questions kind tooling asks."""

    def __init__(self, run: Runner = _run) -> None:
        self._run = run
        self.binary = find_docker()

    def check_engine(self, capabilities: int | None = None) -> dict[str, object]:
        proc = self._run([self.binary, "info", "--format", "{{json .}}"])
        if proc.returncode != 0:
            raise engine_error(proc.stderr)
        info: dict[str, object] = json.loads(proc.stdout)
        caps = bounding_capabilities() if capabilities is None else capabilities
        check_privileged_runtime(str(info.get("DefaultRuntime", "")), caps)
        return info

    def image_exists(self, ref: str) -> bool:
        return (
            self._run([self.binary, "image", "inspect", "--format", "{{.Id}}", ref]).returncode == 0
        )

    def try_pull(self, ref: str) -> bool:
        """Whether ``ref`` could be pulled (registries unreachable here fail at once)."""
        return self._run([self.binary, "pull", "--quiet", ref]).returncode == 0
