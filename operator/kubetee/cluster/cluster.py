"""Bring a local cluster up, down, and report on it.

``up`` is idempotent: it builds missing binaries, (re)starts whatever is not running,
waits for ``/readyz``, makes sure the simulated nodes exist and are Ready, and returns.
The cluster's state (etcd data, certificates, chosen ports) survives ``down``, so the
next ``up`` brings back the same cluster; ``down --purge`` deletes it.
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetee.cluster import nodes as node_ops
from kubetee.cluster.components import Component, control_plane
from kubetee.cluster.errors import ClusterError
from kubetee.cluster.kubeconfig import write_kubeconfig
from kubetee.cluster.layout import PORT_NAMES, ClusterLayout
from kubetee.cluster.pki import ClusterPKI, ensure_pki
from kubetee.cluster.processes import ManagedProcess, port_open, stopped_by_down
from kubetee.cluster.supervisor import PROCESS_NAME as SUPERVISOR
from kubetee.cluster.toolchain import COMPONENTS, Builder, binary_path
from kubetee.nodeagent.adoption import stop_left_running

READY_TIMEOUT = 90.0
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    log_file: str


class LocalCluster:
    """One named local cluster and its processes."""

    def __init__(self, layout: ClusterLayout, out: TextIO = sys.stderr) -> None:
        self.layout = layout
        self._out = out

    # -- processes ---------------------------------------------------------------------

    def _process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.layout.run_dir, self.layout.log_dir)

    def process_names(self) -> list[str]:
        """Every process this cluster started, control plane first, then the others
        (node daemons, and services such as the operator that others run in it)."""
        names = list(CONTROL_PLANE)
        names += sorted(p.stem for p in self.layout.run_dir.glob("*.pid") if p.stem not in names)
        return names

    def status(self) -> list[ComponentStatus]:
        return [
            ComponentStatus(n, self._process(n).pid(), str(self._process(n).log_file))
            for n in self.process_names()
        ]

    def is_running(self) -> bool:
        return any(s.pid is not None for s in self.status())

    # -- up --------------------------------------------------------------------------

    def up(
        self,
        nodes: int,
        *,
        epc_mib: int | None = None,
        enclaves: int | None = None,
        node_services: bool | None = None,
    ) -> None:
        if nodes < 1:
            raise ClusterError(
                f"--nodes must be at least 1 (got {nodes}): the simulated SGX nodes are where "
                "enclave pods run. Try 'kubetee cluster up --nodes 3'."
            )
        started = time.monotonic()
        Builder(self._out).ensure(COMPONENTS)
        layout = self.layout
        layout.allocate_ports()
        layout.nodes = nodes
        layout.epc_mib = epc_mib or layout.epc_mib
        layout.enclaves = enclaves or layout.enclaves
        if node_services is not None:
            layout.node_services = node_services
        self._check_ports_free()
        layout.save()
        pki = ensure_pki(layout.pki_dir)
        write_kubeconfig(
            layout.kubeconfig,
            server=layout.apiserver_url,
            ca=pki.ca.cert,
            client=pki.admin,
            cluster_name=layout.name,
            user="kubetee-admin",
        )
        self._link_tools()
        for component in control_plane(layout, pki):
            self._ensure_running(component, pki)
        self._say("waiting for the default service account (pods need it)")
        client = node_ops.api_client(layout.kubeconfig)
        _wait(
            lambda: node_ops.default_service_account_exists(client),
            READY_TIMEOUT,
            "the controller-manager to create the default service account",
            self._process("kube-controller-manager"),
        )
        self._say(f"ensuring {nodes} simulated SGX node(s)")
        names = node_ops.ensure_nodes(client, nodes)
        _wait(
            lambda: node_ops.all_ready(client, names),
            READY_TIMEOUT,
            "KWOK to mark the nodes Ready",
            self._process("kwok"),
        )
        self._stop_surplus_node_services(names)
        if layout.node_services:
            from kubetee.cluster.pcs import ensure_pcs  # noqa: PLC0415 - optional

            self._say("starting the simulated PCS (the only holder of the SGX CA keys)")
            ensure_pcs(layout)
            self._say(
                "registering each node's platform; starting its quoting service, EPC "
                "device plugin and node agent"
            )
            self._ensure_node_services(names, pki)
            _wait(
                lambda: node_ops.all_have_epc(client, names, layout.epc_mib),
                READY_TIMEOUT,
                f"the node agents to publish {layout.epc_mib} MiB of kubetee.io/epc per node "
                "and usable enclave slots (each node's quoting service answering)",
                self._process(f"node-{names[0]}-node-agent"),
            )
        self._restart_stopped_services()
        self._ensure_supervisor()
        self._say(f"cluster '{layout.name}' is up in {time.monotonic() - started:.1f}s")

    def _say(self, message: str) -> None:
        self._out.write(f"  {message}\n")
        self._out.flush()

    def _check_ports_free(self) -> None:
        """A port in use by something we did not start would make a component fail later."""
        owners = {
            "etcd": "etcd",
            "etcd-peer": "etcd",
            "apiserver": "kube-apiserver",
            "controller-manager": "kube-controller-manager",
            "scheduler": "kube-scheduler",
            "kwok": "kwok",
        }
        for port_name in PORT_NAMES:
            port = self.layout.ports[port_name]
            if self._process(owners[port_name]).pid() is None and port_open(port):
                raise ClusterError(
                    f"Port {port} ({port_name}) on 127.0.0.1 is taken by another program. "
                    f"Stop it, or delete {self.layout.state_file} so new ports are chosen."
                )

    def _link_tools(self) -> None:
        self.layout.bin_dir.mkdir(parents=True, exist_ok=True)
        for tool in ("kubectl", "helm", "kwok", "etcd"):
            link = self.layout.bin_dir / tool
            link.unlink(missing_ok=True)
            link.symlink_to(binary_path(tool))

    def _ensure_running(self, component: Component, pki: ClusterPKI) -> None:
        process = self._process(component.name)
        if process.pid() is None:
            self._say(f"starting {component.name}")
            process.start(component.args)
        else:
            self._say(f"{component.name} already running")
        self._wait_ready(component.name, process, pki)

    def _wait_ready(self, name: str, process: ManagedProcess, pki: ClusterPKI) -> None:
        ports = self.layout.ports
        checks: dict[str, Callable[[], bool]] = {
            "etcd": lambda: port_open(ports["etcd"]),
            "kube-apiserver": lambda: _readyz(self.layout.apiserver_url, pki),
            "kube-controller-manager": lambda: port_open(ports["controller-manager"]),
            "kube-scheduler": lambda: port_open(ports["scheduler"]),
            "kwok": lambda: port_open(ports["kwok"]),
        }
        _wait(checks[name], READY_TIMEOUT, f"{name} to be ready", process)

    def _ensure_node_services(self, names: list[str], pki: ClusterPKI) -> None:
        """Per-node processes (device plugin, node agent, ...) where the package has them."""
        from kubetee.cluster.node_services import node_processes  # noqa: PLC0415 - optional

        agent_kubeconfig = write_kubeconfig(
            self.layout.config_dir / "node-agent.kubeconfig",
            server=self.layout.apiserver_url,
            ca=pki.ca.cert,
            client=pki.node_agent,
            cluster_name=self.layout.name,
            user="kubetee-node-agent",
        )
        for node in names:
            for name, args in node_processes(self.layout, node, agent_kubeconfig):
                process = self._process(f"node-{node}-{name}")
                if process.pid() is None:
                    process.start(args, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def _restart_stopped_services(self) -> None:
        """Start again what ``down`` stopped besides the cluster's own components: the
        operator, attestation replicas and metrics server a demo or user ran in it."""
        for process, record in stopped_by_down(self.layout.run_dir, self.layout.log_dir):
            if process.pid() is None and not self._is_own(process.name):
                self._say(f"starting {process.name} again, as it was before 'down'")
                process.restart(record)
            process.down_file.unlink(missing_ok=True)

    def _is_own(self, name: str) -> bool:
        """Components ``up`` starts by itself (with their current arguments)."""
        return name in CONTROL_PLANE or name.startswith("node-") or name == "sgx-pcs"

    def _ensure_supervisor(self) -> None:
        """The process that restarts the others when they die (see :mod:`.supervisor`)."""
        process = self._process(SUPERVISOR)
        if process.pid() is None:
            self._say("starting the supervisor (restarts any of these processes that dies)")
            process.start(
                [
                    sys.executable, "-m", "kubetee.cli", "cluster", f"--name={self.layout.name}",
                    f"--workdir={self.layout.workdir}", "supervise",
                ],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def _stop_surplus_node_services(self, names: list[str]) -> None:
        keep = {f"node-{n}-" for n in names} if self.layout.node_services else set()
        for name in self.process_names():
            if name.startswith("node-") and not any(name.startswith(k) for k in keep):
                self._process(name).stop()

    # -- down ------------------------------------------------------------------------

    def down(self, purge: bool = False) -> list[str]:
        """Stop every process this cluster started (last started first)."""
        if self._process("kube-apiserver").pid() is not None:
            self._unregister_aggregated_apis()
        # The supervisor first: it would start again what is being stopped.
        stopped = [SUPERVISOR] if self._process(SUPERVISOR).stop() else []
        stopped += [
            n
            for n in reversed(self.process_names())
            if self._process(n).stop(keep_record=not purge and not self._is_own(n))
        ]
        # Node agents stop their pods' sidecars; one killed before (and not restarted,
        # since the supervisor is gone) leaves them running: they must not outlive the
        # cluster.
        if self.layout.socket_dir.is_dir():
            for pods_dir in self.layout.socket_dir.glob("*/pods"):
                if left := stop_left_running(pods_dir):
                    self._say(f"stopped {left} sidecar(s) a dead node agent left in {pods_dir}")
        busy = [f"{name}={port}" for name, port in self.layout.ports.items() if port_open(port)]
        if busy:
            raise ClusterError(
                "Stopped the cluster's processes but these ports still answer: "
                f"{', '.join(busy)}. Another program holds them; check with 'ss -ltnp'."
            )
        if purge:
            for directory in (self.layout.workdir, self.layout.socket_dir):
                if directory.exists():
                    shutil.rmtree(directory)
        return stopped

    def _unregister_aggregated_apis(self) -> None:
        """Aggregated API servers here are local processes about to stop; an APIService
        left without its server fails discovery (and namespace deletion) on the next up."""
        try:
            registry = client.ApiregistrationV1Api(node_ops.api_client(self.layout.kubeconfig))
            for service in registry.list_api_service(_request_timeout=5).items:
                name = service.metadata.name if service.metadata else None
                if name and service.spec is not None and service.spec.service is not None:
                    registry.delete_api_service(name, _request_timeout=5)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            self._say(f"could not unregister aggregated APIs ({exc}); stopping anyway")


def _readyz(url: str, pki: ClusterPKI) -> bool:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
    try:
        with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=2) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait(check: Callable[[], bool], timeout: float, what: str, process: ManagedProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process.pid() is None:
            raise ClusterError(
                f"{process.name} exited while waiting for {what}. Its log is "
                f"{process.log_file}; last lines:\n{process.last_log_lines()}"
            )
        time.sleep(0.25)
    raise ClusterError(
        f"Timed out after {timeout:.0f}s waiting for {what}. See {process.log_file}; "
        f"last lines:\n{process.last_log_lines()}"
    )
