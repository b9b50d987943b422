"""Where a local cluster keeps its files, and the ports it chose on first start."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kubetee.cluster.errors import ClusterError
from kubetee.cluster.processes import free_port

PORT_NAMES = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


def state_root() -> Path:
    override = os.environ.get("KUBETEE_STATE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "kubetee" / "clusters"


def repo_root() -> Path:
    """The checkout this package runs from (the cluster reads deploy/ files from it)."""
    return Path(__file__).resolve().parents[3]


@dataclass
class ClusterLayout:
    """The work directory of one named cluster, and the loopback ports it uses."""

    name: str
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    nodes: int = 3
    epc_mib: int = 128  # simulated EPC each node's device plugin advertises
    enclaves: int = 16  # enclave slots per node
    node_services: bool = True  # device plugin, node agent, quoting service per node

    @classmethod
    def for_name(cls, name: str, workdir: Path | None = None) -> ClusterLayout:
        if not _NAME.match(name):
            raise ClusterError(
                f"Invalid cluster name {name!r}: use lower-case letters, digits and '-' "
                "(at most 40 characters), for example 'default'."
            )
        layout = cls(name=name, workdir=(workdir or state_root() / name).resolve())
        if layout.state_file.exists():
            saved = json.loads(layout.state_file.read_text())
            layout.ports = {k: int(v) for k, v in saved.get("ports", {}).items()}
            layout.nodes = int(saved.get("nodes", layout.nodes))
            layout.epc_mib = int(saved.get("epc_mib", layout.epc_mib))
            layout.enclaves = int(saved.get("enclaves", layout.enclaves))
            layout.node_services = bool(saved.get("node_services", layout.node_services))
        return layout

    @property
    def state_file(self) -> Path:
        return self.workdir / "cluster.json"

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def etcd_data_dir(self) -> Path:
        return self.workdir / "etcd"

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    @property
    def bin_dir(self) -> Path:
        """Links to kubectl and helm, so ``PATH`` can point at one directory."""
        return self.workdir / "bin"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def node_dir(self, node: str) -> Path:
        return self.workdir / "nodes" / node

    @property
    def socket_dir(self) -> Path:
        """A short directory for Unix sockets (their paths are limited to 107 bytes)."""
        digest = hashlib.sha256(str(self.workdir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"kubetee-{digest}"

    def node_socket_dir(self, node: str) -> Path:
        return self.socket_dir / node

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def allocate_ports(self) -> None:
        """Pick free loopback ports once; later starts reuse them (kubeconfigs name them)."""
        for name in PORT_NAMES:
            if name not in self.ports:
                self.ports[name] = free_port()

    def save(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["workdir"] = str(self.workdir)
        self.state_file.write_text(json.dumps(data, indent=2) + "\n")
