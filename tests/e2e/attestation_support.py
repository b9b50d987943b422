"""Helpers of the attestation end-to-end tests: the attestation service (two replicas),
an operator that points runtimes at it, where a pod's local runtime keeps its files.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from enclave_runtime.runtime.enclave import EnclaveIdentity, identity_of, load_signer
from enclave_runtime.runtime.settings import EnclaveConfig
from kubetee.api.v1alpha1 import EnclaveContainerSpec
from kubetee.attestation_service.tls import generate
from kubetee.cluster import pcs
from kubetee.cluster.node_services import quoting_socket
from kubetee.controller.sidecar import enclave_config
from tests.e2e.conftest import REPO_ROOT, E2ECluster
from tests.e2e.operator_support import OperatorProcess, install_crds

NONCE_TTL_SECONDS = 10
GRACE_SECONDS = 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class AttestationService:
    urls: list[str]
    ca: Path
    logs: list[Path]
    namespace: str
    metrics_url: str = ""  # replica a's /metrics
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def pause(self) -> None:
        """Freeze every replica, all its workers (SIGSTOP to its process group):
        connections are accepted by no one in time."""
        for process in self.processes:
            os.killpg(process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        for process in self.processes:
            os.killpg(process.pid, signal.SIGCONT)

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@pytest.fixture(scope="module")
def attestation_service(
    cluster: E2ECluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AttestationService]:
    """Two replicas of ``kubetee attestation-service serve`` sharing the session key (each
    binds its nonces to itself). Replica a, which runtimes are pointed at and whose
    metrics are scraped, runs two workers on its port, as ``attestationService.workers``
    does in the chart."""
    workdir = tmp_path_factory.mktemp("kbs")
    tls = generate(workdir / "tls", ["127.0.0.1", "localhost"])
    key = workdir / "session.key"
    key.write_text(secrets.token_urlsafe(48))
    # Unique per module: an earlier module's namespace may still be terminating.
    namespace = f"kubetee-kbs-{os.getpid()}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(cluster.api)
    try:
        core.create_namespace({"metadata": {"name": namespace}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    processes: list[subprocess.Popen[bytes]] = []
    urls, logs = [], []
    layout = cluster.local_layout()
    metrics_port = free_port()
    for replica in ("a", "b"):
        port = free_port()
        log = workdir / f"kbs-{replica}.log"
        with log.open("ab") as out:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable, "-m", "kubetee.cli", "attestation-service", "serve",
                        "--host=127.0.0.1", f"--port={port}",
                        f"--tls-cert={tls.certificate}", f"--tls-key={tls.key}",
                        f"--session-key-file={key}", f"--namespace={namespace}",
                        f"--instance=kbs-{replica}",
                        f"--nonce-ttl-seconds={NONCE_TTL_SECONDS}",
                        f"--pccs-url={pcs.url(layout)}",
                        f"--pccs-ca={pcs.tls_files(layout).ca}",
                        f"--root-ca={pcs.root_ca(layout)}",
                        f"--platform-registry={pcs.REGISTRY}",
                        f"--metrics-port={metrics_port if replica == 'a' else 0}",
                        f"--kubeconfig={cluster.kubeconfig}",
                        f"--workers={2 if replica == 'a' else 1}",
                    ],
                    stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                    start_new_session=True,  # its own process group, with its workers
                )
            )  # fmt: skip
        urls.append(f"https://127.0.0.1:{port}")
        logs.append(log)
    service = AttestationService(
        urls, tls.ca, logs, namespace, f"http://127.0.0.1:{metrics_port}/metrics", processes
    )
    try:
        for url, process in zip(urls, processes, strict=True):
            _wait_healthy(url, service.context(), process, service)
        yield service
    finally:
        service.resume()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        core.delete_namespace(namespace)


def _wait_healthy(
    url: str, context: ssl.SSLContext, process: subprocess.Popen[bytes], service: AttestationService
) -> None:
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"attestation service exited: {service.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", context=context, timeout=2):  # noqa: S310
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"attestation service at {url} never answered: {service.log_text()[-3000:]}")


class AttestingOperator(OperatorProcess):
    """``kubetee operator`` pointing every runtime at the test's attestation service."""

    def __init__(self, kubeconfig: Path, log_path: Path, service: AttestationService) -> None:
        super().__init__(kubeconfig, log_path)
        self.service = service

    def start(self) -> None:
        extra = {
            "KUBETEE_ATTESTATION_URL": self.service.urls[0],
            "KUBETEE_ATTESTATION_CA": str(self.service.ca),
            "KUBETEE_ATTESTATION_SWEEP_SECONDS": "1",
            "KUBETEE_ATTESTATION_PROBE_SECONDS": "1",
            "KUBETEE_REATTEST_GRACE_SECONDS": str(GRACE_SECONDS),
        }
        saved = {name: os.environ.get(name) for name in extra}
        os.environ.update(extra)
        try:
            super().start()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(scope="module")
def attesting_operator(
    cluster: E2ECluster,
    attestation_service: AttestationService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AttestingOperator]:
    install_crds(cluster)
    process = AttestingOperator(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        attestation_service,
    )
    process.start()
    try:
        yield process
    finally:
        process.kill(signal.SIGTERM)


def pod_dir(cluster: E2ECluster, pod: client.V1Pod) -> Path:
    """Where the node agent runs the pod's runtime (its KUBETEE_ROOT is ``root/``)."""
    metadata = pod.metadata
    name = f"{metadata.namespace}_{metadata.name}_{metadata.uid}"
    return cluster.local_layout().node_socket_dir(pod.spec.node_name) / "pods" / name


def node_quoting_socket(cluster: E2ECluster, node: str) -> Path:
    return quoting_socket(cluster.local_layout(), node)


def expected_identity(name: str, namespace: str, spec: dict[str, Any]) -> EnclaveIdentity:
    """The identity the operator's runtime will measure for this EnclaveContainer."""
    config = enclave_config(name, namespace, EnclaveContainerSpec.model_validate(spec))
    return identity_of(EnclaveConfig.model_validate(config), None, load_signer(None))


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
