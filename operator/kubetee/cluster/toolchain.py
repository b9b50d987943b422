"""Build the real Kubernetes control plane from the Go module proxy, once per machine.

Each component is built in a generated wrapper module under the cache directory
(``~/.cache/kubetee/build/<name>-<version>``). Modules such as ``k8s.io/kubernetes``
and etcd's server point their sibling modules at local directories with ``replace``;
those directives are ignored when the module is a dependency, so the wrapper copies
them from the release's own go.mod, pinned to the published versions instead.
Binaries land in ``~/.cache/kubetee/bin/<name>-<version>/`` and are reused afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kubetee.cluster.errors import ClusterError

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.22.0"

_REPLACE_LOCAL = re.compile(r"^\s*(?:replace\s+)?(\S+)(?:\s+\S+)?\s+=>\s+(\.{1,2}/\S*)\s*$")


def cache_dir() -> Path:
    """Where built binaries and build logs live (outside the repository)."""
    override = os.environ.get("KUBETEE_CACHE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kubetee"


@dataclass(frozen=True)
class Component:
    """One Go main module to build, with the binaries it provides."""

    name: str
    module: str
    version: str
    binaries: dict[str, str]  # binary name -> Go package path
    # -ldflags from the version and the release's own go.mod text.
    ldflags: Callable[[str, str], list[str]] = field(default=lambda _v, _mod: [])
    # Version of the sibling modules the release replaces with local directories.
    sibling_version: Callable[[str], str] = field(default=lambda v: v)
    # Bumped when the build recipe changes, so binaries cached by an older recipe are rebuilt.
    revision: int = 1
    # Needs cgo (C parts in the program itself); everything else is built static without it.
    cgo: bool = False

    @property
    def bin_dir(self) -> Path:
        suffix = f"-r{self.revision}" if self.revision > 1 else ""
        return cache_dir() / "bin" / f"{self.name}-{self.version}{suffix}"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def is_built(self) -> bool:
        return all(self.binary(b).is_file() for b in self.binaries)


def _kubernetes_ldflags(version: str, _go_mod: str) -> list[str]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.gitCommit=0000000000000000000000000000000000000000",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return flags


KUBERNETES = Component(
    name="kubernetes",
    module="k8s.io/kubernetes",
    version=KUBERNETES_VERSION,
    binaries={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    },
    ldflags=_kubernetes_ldflags,
    # k8s.io/api and friends are published as v0.<minor>.<patch> for release v1.<minor>.<patch>.
    sibling_version=lambda v: "v0." + v.split(".", 1)[1],
)
ETCD = Component(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
    binaries={"etcd": "go.etcd.io/etcd/server/v3"},
)
KWOK = Component(
    name="kwok",
    module="sigs.k8s.io/kwok",
    version=KWOK_VERSION,
    binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
    ldflags=lambda v, _mod: [f"-X sigs.k8s.io/kwok/pkg/consts.Version={v}"],
)


def _helm_ldflags(version: str, go_mod: str) -> list[str]:
    """As helm's Makefile: the default Kubernetes version follows its client-go (v0.X -> 1.X)."""
    match = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.", go_mod, re.MULTILINE)
    flags = [
        f"-X helm.sh/helm/v3/internal/version.version={version}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
    ]
    if match:
        for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
            flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={match.group(1)}"]
    return flags


HELM = Component(
    name="helm",
    module="helm.sh/helm/v3",
    version=HELM_VERSION,
    binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
    ldflags=_helm_ldflags,
    revision=2,
)
COMPONENTS: tuple[Component, ...] = (ETCD, KUBERNETES, KWOK, HELM)


def binary_path(name: str) -> Path:
    """The cached path of a binary such as ``kube-apiserver`` (built or not)."""
    for component in COMPONENTS:
        if name in component.binaries:
            return component.binary(name)
    raise KeyError(name)


def find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise ClusterError(
            "The Go toolchain ('go') is not on PATH. KubeTEE builds the Kubernetes control plane "
            "from Go modules once per machine: install Go 1.24 or newer (for example "
            "'apt-get install golang' or from go.dev) and run the command again."
        )
    return go


def _required_modules(go_mod: str) -> set[str]:
    required: set[str] = set()
    in_block = False
    for raw in go_mod.splitlines():
        stripped = raw.split("//", 1)[0].strip()
        if stripped.startswith("require ("):
            in_block = True
        elif in_block and stripped == ")":
            in_block = False
        elif in_block and stripped:
            required.add(stripped.split()[0])
        elif stripped.startswith("require "):
            required.add(stripped.split()[1])
    return required


def local_replaces(go_mod: str, sibling_version: str) -> list[str]:
    """Turn a release's ``replace X => ./local/dir`` lines into ``X => X <version>`` pins.

    Only modules the release requires are pinned: releases also replace modules they
    forbid (etcd points ``go.etcd.io/etcd`` at ``./FORBIDDEN_DEPENDENCY``).
    """
    required = _required_modules(go_mod)
    pins: list[str] = []
    in_block = False
    for raw in go_mod.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        stripped = line.strip()
        if stripped.startswith("replace ("):
            in_block = True
            continue
        if in_block and stripped == ")":
            in_block = False
            continue
        if not (in_block or stripped.startswith("replace ")):
            continue
        match = _REPLACE_LOCAL.match(stripped)
        if match and match.group(1) in required:
            module = match.group(1)
            pins.append(f"{module} => {module} {sibling_version}")
    return pins


class Progress:
    """Prints what is being built and the elapsed time while a step runs."""

    def __init__(self, label: str, out: TextIO, interval: float = 15.0) -> None:
        self._label = label
        self._out = out
        self._interval = interval
        self._start = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Progress:
        self._out.write(f"  {self._label} ...\n")
        self._out.flush()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            self._out.write(
                f"  {self._label}: still building, {format_duration(self.elapsed)} elapsed\n"
            )
            self._out.flush()


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Builder:
    """Builds components into the cache, logging each step to a file kept on failure."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self._go = ""  # looked up only when something has to be built
        self._out = out
        self._env = {
            **os.environ,
            "CGO_ENABLED": "0",
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-mod=mod -buildvcs=false",
        }

    def ensure(self, components: Sequence[Component] = COMPONENTS) -> None:
        missing = [c for c in components if not c.is_built()]
        if not missing:
            return
        self._go = find_go()
        total = sum(len(c.binaries) for c in missing)
        self._out.write(
            f"Building {total} binaries once for this machine into {cache_dir() / 'bin'} "
            "(a cold build takes a while on 2 cores; later runs reuse it).\n"
        )
        started = time.monotonic()
        step = 0
        for component in missing:
            workdir, go_mod = self._prepare(component)
            for binary, package in component.binaries.items():
                step += 1
                if component.binary(binary).is_file():
                    continue
                self._build(
                    component, workdir, go_mod, binary, package, counter=f"[{step}/{total}]"
                )
        self._out.write(f"All binaries built in {format_duration(time.monotonic() - started)}.\n")

    @property
    def log_dir(self) -> Path:
        return cache_dir() / "build" / "logs"

    def _log_path(self, step: str) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{step}.log"

    def _run(self, step: str, args: list[str], cwd: Path) -> str:
        return self.run_step(
            step,
            args,
            cwd,
            hint="Check that the Go module proxy is reachable (GOPROXY) and run the command again.",
        )

    def run_step(
        self,
        step: str,
        args: Sequence[str],
        cwd: Path,
        *,
        hint: str,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run one build step with its output in ``build/logs/<step>.log``; its stdout back.

        On failure the error names the log, quotes its last lines and ends with ``hint``.
        """
        log = self._log_path(step)
        with log.open("w") as fh:
            fh.write(f"$ {' '.join(args)}  (in {cwd})\n")
            fh.flush()
            proc = subprocess.run(
                list(args),
                cwd=cwd,
                env={**self._env, **(env or {})},
                stdout=subprocess.PIPE,
                stderr=fh,
                text=True,
                check=False,
            )
            fh.write(proc.stdout)
        if proc.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise ClusterError(
                f"Build step '{step}' failed (exit {proc.returncode}). The full log is kept at "
                f"{log}; its last lines:\n{tail}\n{hint}"
            )
        return proc.stdout

    def _prepare(self, component: Component) -> tuple[Path, str]:
        workdir = cache_dir() / "build" / f"{component.name}-{component.version}"
        workdir.mkdir(parents=True, exist_ok=True)
        # A fresh module each time, so a half-written go.mod from a failed run cannot interfere.
        (workdir / "go.mod").write_text(f"module kubetee.local/build/{component.name}\n")
        (workdir / "go.sum").unlink(missing_ok=True)
        step = f"{component.name}-{component.version}-download"
        with Progress(f"fetching {component.module}@{component.version}", self._out):
            info = json.loads(
                self._run(
                    step,
                    [
                        self._go,
                        "mod",
                        "download",
                        "-json",
                        f"{component.module}@{component.version}",
                    ],
                    workdir,
                )
            )
        go_mod = Path(info["GoMod"]).read_text()
        pins = local_replaces(go_mod, component.sibling_version(component.version))
        lines = [
            f"module kubetee.local/build/{component.name}",
            "",
            "go 1.24",
            "",
            f"require {component.module} {component.version}",
            "",
        ]
        lines += [f"replace {pin}" for pin in pins]
        (workdir / "go.mod").write_text("\n".join(lines) + "\n")
        return workdir, go_mod

    def _build(
        self,
        component: Component,
        workdir: Path,
        go_mod: str,
        binary: str,
        package: str,
        *,
        counter: str,
    ) -> None:
        target = component.binary(binary)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        ldflags = " ".join(["-s", "-w", *component.ldflags(component.version, go_mod)])
        label = f"{counter} {binary} {component.version}"
        with Progress(label, self._out) as progress:
            self.run_step(
                f"{binary}-{component.version}",
                [self._go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), package],
                workdir,
                hint="Check that the Go module proxy is reachable (GOPROXY)"
                + (" and that gcc is installed (cgo)" if component.cgo else "")
                + " and run the command again.",
                env={"CGO_ENABLED": "1"} if component.cgo else None,
            )
        partial.rename(target)
        self._out.write(f"  {label}: built in {format_duration(progress.elapsed)}\n")
        self._out.flush()
