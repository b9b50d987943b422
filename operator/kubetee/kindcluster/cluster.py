"""A kind cluster made from the offline node image: create, reuse, wait, delete."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

from kubetee.cluster.errors import ClusterError
from kubetee.cluster.layout import repo_root, state_root
from kubetee.cluster.toolchain import KUBERNETES, Builder, Progress
from kubetee.kindcluster.components import KIND
from kubetee.kindcluster.docker import Docker
from kubetee.kindcluster.nodeimage import NodeImageBuilder

DEFAULT_NAME = "kubetee"
SGX_LABEL = "kubetee.io/sgx"
SGX_DEVICES = ("/dev/sgx_enclave", "/dev/sgx_provision")
API_READY_TIMEOUT = 300.0


def default_config() -> Path:
    return repo_root() / "deploy" / "kind" / "kind-config.yaml"


def check_config(text: str) -> dict[str, object]:
    """Refuse a kind config the KubeTEE tooling cannot use, saying what is missing."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ClusterError(f"The kind config is not valid YAML: {exc}") from None
    if not isinstance(config, dict) or config.get("kind") != "Cluster":
        raise ClusterError("The kind config must be a 'kind: Cluster' document.")
    nodes = config.get("nodes") or []
    workers = [n for n in nodes if isinstance(n, dict) and n.get("role") == "worker"]
    sgx = [w for w in workers if str((w.get("labels") or {}).get(SGX_LABEL)) == "true"]
    if not sgx:
        raise ClusterError(
            f"The kind config has no worker labelled {SGX_LABEL}=true: KubeTEE schedules "
            "enclaves only on such nodes."
        )
    for worker in sgx:
        mounted = {m.get("containerPath") for m in worker.get("extraMounts") or []}
        missing = [d for d in SGX_DEVICES if d not in mounted]
        if missing:
            raise ClusterError(
                f"An SGX worker in the kind config mounts no {', '.join(missing)}: the device "
                "plugin hands these device nodes to every enclave and the container runtime "
                "refuses to start a container whose device is missing. Mount /dev/null there "
                "(simulated SGX) or the host's SGX devices."
            )
    return config


@dataclass(frozen=True)
class KindPaths:
    """Where a kind cluster's kubeconfig and logs live."""

    name: str

    @property
    def workdir(self) -> Path:
        return state_root().parent / "kind" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"


class KindCluster:
    """One named kind cluster, created with the kind binary built from its Go module."""

    def __init__(self, name: str = DEFAULT_NAME, out: TextIO = sys.stderr) -> None:
        self.paths = KindPaths(name)
        self._out = out
        self._builder = Builder(out)

    @property
    def name(self) -> str:
        return self.paths.name

    @property
    def kind(self) -> Path:
        return KIND.binary("kind")

    @property
    def kubectl(self) -> Path:
        return KUBERNETES.binary("kubectl")

    def build(self, *, allow_pull: bool = True) -> str:
        """Everything ``up`` needs, built or found: returns the node image."""
        docker = Docker()
        docker.check_engine()
        self._builder.ensure((KIND, KUBERNETES))
        return NodeImageBuilder(self._builder, docker, self._out).ensure(allow_pull=allow_pull)

    def exists(self) -> bool:
        if not self.kind.is_file():
            return False
        proc = subprocess.run(
            [str(self.kind), "get", "clusters"], capture_output=True, text=True, check=False
        )
        return self.name in proc.stdout.split()

    def nodes(self) -> list[str]:
        proc = subprocess.run(
            [str(self.kind), "get", "nodes", "--name", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return sorted(proc.stdout.split()) if proc.returncode == 0 else []

    def stopped_nodes(self) -> list[str]:
        """The cluster's node containers that are not running."""
        nodes = self.nodes()
        if not nodes:
            return []
        proc = subprocess.run(
            ["docker", "inspect", "--format", "{{.Name}} {{.State.Running}}", *nodes],
            capture_output=True,
            text=True,
            check=False,
        )
        states = dict(line.lstrip("/").split() for line in proc.stdout.splitlines() if line)
        return [node for node in nodes if states.get(node) != "true"]

    def up(self, config: Path, *, allow_pull: bool = True) -> float:
        """Create the cluster (or reuse it) and wait until it serves pods; seconds taken."""
        text = config.read_text() if config.is_file() else None
        if text is None:
            raise ClusterError(f"The kind config {config} does not exist.")
        check_config(text)
        image = self.build(allow_pull=allow_pull)
        started = time.monotonic()
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        stopped = self.stopped_nodes() if self.exists() else []
        if stopped:
            # Node containers do not survive their Docker engine's restart (or a machine's):
            # a fresh cluster is quicker and surer than reviving kubeadm's state.
            self._out.write(
                f"Cluster '{self.name}' exists but node(s) {', '.join(stopped)} are not "
                "running (Docker engine restarted?): recreating it.\n"
            )
            self.delete()
        if self.exists():
            self._out.write(f"Cluster '{self.name}' exists; reusing it.\n")
            self._step(
                "export-kubeconfig",
                [
                    str(self.kind),
                    "export",
                    "kubeconfig",
                    "--name",
                    self.name,
                    "--kubeconfig",
                    str(self.paths.kubeconfig),
                ],
                "kind could not write the kubeconfig",
            )
        else:
            self._create(config, image)
        self._wait_ready()
        return time.monotonic() - started

    def _create(self, config: Path, image: str) -> None:
        args = [
            str(self.kind),
            "create",
            "cluster",
            "--name",
            self.name,
            "--image",
            image,
            "--config",
            str(config),
            "--kubeconfig",
            str(self.paths.kubeconfig),
            "--retain",
        ]
        try:
            with Progress(
                f"creating kind cluster '{self.name}' from {image}",
                self._out,
                activity="still creating",
            ):
                self._step("create", args, "kind could not create the cluster")
        except ClusterError:
            logs = self.paths.log_dir / "kind-export"
            subprocess.run(
                [str(self.kind), "export", "logs", str(logs), "--name", self.name],
                capture_output=True,
                check=False,
            )
            self.delete()
            raise ClusterError(
                f"kind could not create cluster '{self.name}'. Its output is in "
                f"{self.paths.log_dir / 'create.log'}, the nodes' logs (kubelet, containerd, "
                f"journal) in {logs}. The cluster was deleted; fix the cause and run "
                "'kubetee kind up' again."
            ) from None

    def _wait_api(self, kubectl: list[str], timeout: float = API_READY_TIMEOUT) -> None:
        """Wait until the apiserver is ready, authorizer included.

        A reused cluster whose node containers just restarted (with their Docker engine)
        answers before its RBAC caches are filled, and refuses even the admin ('Forbidden');
        'kubectl wait' gives up at the first refusal, so readiness is polled first.
        """
        log = self.paths.log_dir / "wait-apiserver.log"
        log.write_text("")
        deadline = time.monotonic() + timeout
        with Progress("waiting for the apiserver", self._out, activity="still waiting"):
            while True:
                proc = subprocess.run(
                    [*kubectl, "get", "--raw", "/readyz"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                with log.open("a") as fh:
                    fh.write(f"{proc.stdout}{proc.stderr}")
                if proc.returncode == 0 and self._admin_allowed(kubectl):
                    return
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"The apiserver of cluster '{self.name}' was not ready within "
                        f"{timeout:.0f} s; its answers are in {log}. Look at the control-plane "
                        f"node ('docker logs {self.name}-control-plane'), or recreate the "
                        "cluster: 'kubetee kind down' then 'kubetee kind up'."
                    )
                time.sleep(2)

    def _admin_allowed(self, kubectl: list[str]) -> bool:
        proc = subprocess.run(
            [*kubectl, "auth", "can-i", "list", "nodes"],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.strip() == "yes"

    def _wait_ready(self) -> None:
        kubectl = [str(self.kubectl), "--kubeconfig", str(self.paths.kubeconfig)]
        self._wait_api(kubectl)
        with Progress("waiting for every node to be Ready", self._out, activity="still waiting"):
            self._step(
                "wait-nodes",
                [*kubectl, "wait", "--for=condition=Ready", "nodes", "--all", "--timeout=300s"],
                "Nodes did not become Ready: look at 'kubectl get nodes' and the CNI's pods "
                "('kubectl -n kube-flannel get pods')",
            )
        for namespace, daemonset in (
            ("kube-system", "kube-proxy"),
            ("kube-flannel", "kube-flannel-ds"),
        ):
            with Progress(
                f"waiting for {daemonset} on every node", self._out, activity="still waiting"
            ):
                self._step(
                    f"wait-{daemonset}",
                    [
                        *kubectl,
                        "-n",
                        namespace,
                        "rollout",
                        "status",
                        f"daemonset/{daemonset}",
                        "--timeout=300s",
                    ],
                    f"{daemonset} did not run on every node: look at "
                    f"'kubectl -n {namespace} logs daemonset/{daemonset}'",
                )
        with Progress("waiting for CoreDNS", self._out, activity="still waiting"):
            self._step(
                "wait-coredns",
                [
                    *kubectl,
                    "-n",
                    "kube-system",
                    "rollout",
                    "status",
                    "deployment/coredns",
                    "--timeout=300s",
                ],
                "CoreDNS did not become available: look at "
                "'kubectl -n kube-system describe pods -l k8s-app=kube-dns'",
            )

    def delete(self) -> bool:
        if not self.exists():
            return False
        self._step(
            "delete",
            [
                str(self.kind),
                "delete",
                "cluster",
                "--name",
                self.name,
                "--kubeconfig",
                str(self.paths.kubeconfig),
            ],
            "kind could not delete the cluster",
        )
        self.paths.kubeconfig.unlink(missing_ok=True)
        return True

    def _step(self, step: str, args: list[str], what: str) -> str:
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.paths.log_dir / f"{step}.log"
        with log.open("w") as fh:
            fh.write(f"$ {' '.join(args)}\n")
            fh.flush()
            proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=fh, text=True, check=False)
            fh.write(proc.stdout)
        if proc.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-12:])
            raise ClusterError(f"{what} (exit {proc.returncode}); full log {log}, its end:\n{tail}")
        return proc.stdout
