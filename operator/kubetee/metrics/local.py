"""The custom metrics API server of a local cluster (``kubetee cluster up``).

:func:`start` runs ``kubetee metrics-apiserver serve`` as one more process of the
cluster (pid and log files beside the control plane's), with:

* its own identity: a client certificate ``kubetee-metrics-apiserver`` from the
  cluster CA, bound to least-privilege RBAC (:mod:`.apiserver.manifests`);
* a serving certificate from its own CA (the APIService's ``caBundle``) for the
  Service's DNS names;
* the runtimes' endpoints from the file_sd files the node agents' local runtimes
  write (``<pod dir>/root/run/kubetee/metrics-target.json``);
* a port on 127.0.0.1, reached by the kube-apiserver through an ``ExternalName``
  Service (``localhost``), see :mod:`.apiserver.manifests`.

Then it registers the APIService and waits until the kube-apiserver reports it
Available. :func:`stop` stops the process and removes the APIService, so the
apiserver's discovery does not keep failing on an absent server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from kubetee.cluster.kubeconfig import write_kubeconfig
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.pki import ensure_pki, issue
from kubetee.cluster.processes import ManagedProcess
from kubetee.cluster.toolchain import binary_path
from kubetee.metrics.apiserver import manifests
from kubetee.metrics.apiserver.tls import ensure_serving_certificate
from kubetee.metrics.errors import MetricsError

PROCESS_NAME = "metrics-apiserver"
LOOPBACK = "127.0.0.1"
IDENTITY = "kubetee-metrics-apiserver"
READY_TIMEOUT = 60.0
# Where the node agents lay out pods (see kubetee.nodeagent.pod_runtimes), and the file
# each local runtime announces its metrics endpoint in (kubetee.metrics.runtime).
TARGET_FILE = "root/run/kubetee/metrics-target.json"


class LocalMetricsError(MetricsError):
    """The local custom metrics API server could not be started or registered."""


@dataclass(frozen=True)
class LocalMetricsApiserver:
    address: str
    port: int
    pid: int | None
    log_file: Path


def work_dir(layout: ClusterLayout) -> Path:
    return layout.workdir / "metrics-apiserver"


def process(layout: ClusterLayout) -> ManagedProcess:
    return ManagedProcess(PROCESS_NAME, layout.run_dir, layout.log_dir)


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def target_globs(layout: ClusterLayout) -> list[str]:
    """file_sd patterns covering every node's pods (the node agents' default pod dirs)."""
    return [
        str(layout.socket_dir / "*" / "pods" / "*" / TARGET_FILE),
        str(layout.workdir / "nodes" / "*" / "pods" / "*" / TARGET_FILE),
    ]


def _kubectl(layout: ClusterLayout, *args: str, input_text: str | None = None) -> str:
    result = subprocess.run(
        [str(binary_path("kubectl")), f"--kubeconfig={layout.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        input=input_text,
        timeout=60,
    )
    if result.returncode != 0:
        raise LocalMetricsError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _apply(layout: ClusterLayout, objects: list[dict[str, Any]]) -> None:
    _kubectl(
        layout,
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={manifests.FIELD_MANAGER}",
        "-f",
        "-",
        input_text=yaml.safe_dump_all(objects),
    )


def _state(layout: ClusterLayout, address: str) -> dict[str, Any]:
    """The port, chosen once per address and kept (the APIService names it)."""
    path = work_dir(layout) / "state.json"
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {}
    if state.get("address") != address or not state.get("port"):
        state = {"address": address, "port": _free_port(address)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state) + "\n")
    return state


def start(
    layout: ClusterLayout, out: TextIO = sys.stderr, timeout: float = READY_TIMEOUT
) -> LocalMetricsApiserver:
    """Run the server for ``layout``'s cluster (if not running), register it, wait."""
    directory = work_dir(layout)
    directory.mkdir(parents=True, exist_ok=True)
    pki = ensure_pki(layout.pki_dir)
    client = issue(pki.ca, directory, "client", IDENTITY, client=True)
    kubeconfig = write_kubeconfig(
        directory / "kubeconfig",
        server=layout.apiserver_url,
        ca=pki.ca.cert,
        client=client,
        cluster_name=layout.name,
        user=IDENTITY,
    )
    address = LOOPBACK
    port = int(_state(layout, address)["port"])
    serving = ensure_serving_certificate(
        directory / "tls", manifests.service_dns_names(), (address,)
    )
    _apply(layout, manifests.rbac({"kind": "User", "name": IDENTITY}))
    managed = process(layout)
    if managed.pid() is None:
        out.write(f"  starting the custom metrics API server on {address}:{port}\n")
        managed.start(
            [
                sys.executable,
                "-m",
                "kubetee.cli",
                "metrics-apiserver",
                "serve",
                f"--kubeconfig={kubeconfig}",
                f"--bind-address={address}",
                f"--secure-port={port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                *(f"--file-sd={pattern}" for pattern in target_globs(layout)),
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    _apply(
        layout,
        [
            manifests.local_service(port),
            manifests.api_service(serving.ca_pem(), port=port),
        ],
    )
    _wait_available(layout, managed, timeout)
    return LocalMetricsApiserver(address, port, managed.pid(), managed.log_file)


def _available(layout: ClusterLayout) -> tuple[bool, str]:
    try:
        body = json.loads(
            _kubectl(layout, "get", "apiservice", manifests.api_service_name(), "-o", "json")
        )
    except LocalMetricsError as error:
        return False, str(error)
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Available":
            return condition.get("status") == "True", str(condition.get("message", ""))
    return False, "no Available condition yet"


def _wait_available(layout: ClusterLayout, managed: ManagedProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    message = ""
    while time.monotonic() < deadline:
        if managed.pid() is None:
            raise LocalMetricsError(
                f"the custom metrics API server exited; its log {managed.log_file} ends:\n"
                f"{managed.last_log_lines()}"
            )
        available, message = _available(layout)
        if available:
            return
        time.sleep(0.5)
    raise LocalMetricsError(
        f"the APIService {manifests.api_service_name()} is not Available after "
        f"{timeout:.0f}s: {message}. Server log {managed.log_file}:\n{managed.last_log_lines()}"
    )


def stop(layout: ClusterLayout, *, unregister: bool = True) -> bool:
    """Unregister the APIService and stop the server; True if a process was stopped.

    Unregister while the kube-apiserver still runs: an APIService without its server
    fails discovery, which holds up namespace deletion until it answers again. A
    kube-apiserver already gone is no reason not to stop the process.
    """
    try:
        if unregister:
            _kubectl(
                layout, "delete", "apiservice", manifests.api_service_name(), "--ignore-not-found"
            )
    finally:
        stopped = process(layout).stop()
    return stopped


def run_cli(cluster: str, *, stop_it: bool) -> int:
    """``kubetee metrics-apiserver local [--stop]``."""
    layout = ClusterLayout.for_name(cluster)
    if not layout.state_file.exists():
        sys.stderr.write(
            f"kubetee metrics-apiserver: error: no local cluster named {cluster!r} "
            f"(start one with 'kubetee cluster up --name {cluster}')\n"
        )
        return 2
    try:
        if stop_it:
            stopped = stop(layout)
            sys.stdout.write("stopped\n" if stopped else "was not running; APIService removed\n")
            return 0
        server = start(layout)
    except MetricsError as error:
        sys.stderr.write(f"kubetee metrics-apiserver: error: {error}\n")
        return 1
    sys.stdout.write(
        f"custom.metrics.k8s.io/v1beta2 served on https://{server.address}:{server.port} "
        f"(pid {server.pid}, log {server.log_file}); try: kubectl get --raw "
        "/apis/custom.metrics.k8s.io/v1beta2\n"
    )
    return 0
