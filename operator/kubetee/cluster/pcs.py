"""The local cluster's simulated Intel PCS: one process, the only holder of the SGX CA keys.

``kubetee cluster up`` applies ``deploy/cluster/sgx-pcs.yaml`` (namespace ``kubetee-sgx``,
the PCS's ServiceAccount with TokenReview and its registry ConfigMap, the nodes'
ServiceAccount), creates the authority in ``<workdir>/sgx-pcs/`` (read by nothing but
the PCS process), and runs ``kubetee pcs serve`` on loopback with its own TLS
certificate, authenticated to the apiserver as its ServiceAccount. Each node then
registers its platform with a token of ``sgx-node`` bound to its Node object, as a
kubelet gets tokens bound to its pods: the PCS learns the node's name from the token.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, cast

import yaml
from cryptography import x509
from kubernetes import client

from enclave_runtime.quoting.provision import ensure_authority
from enclave_runtime.quoting.registration import PCS_AUDIENCE, RegistrationError, register
from enclave_runtime.sgx.authority import DEFAULT_EXTRA_FMSPCS, DEFAULT_FMSPC
from enclave_runtime.sgx.platform import SimulatedPlatform
from kubetee.attestation_service.tls import TlsFiles, generate
from kubetee.cluster.errors import ClusterError
from kubetee.cluster.layout import ClusterLayout, repo_root
from kubetee.cluster.processes import ManagedProcess, free_port
from kubetee.cluster.toolchain import binary_path
from kubetee.k8s.sync_client import sync_api_client

NAMESPACE = "kubetee-sgx"
PCS_ACCOUNT = "pcs"
NODE_ACCOUNT = "sgx-node"
REGISTRY_NAME = "kubetee-sgx-platforms"
REGISTRY = f"{NAMESPACE}/{REGISTRY_NAME}"
"""The platform registry, as ``--platform-registry`` of the attestation service takes it."""
PROCESS = "sgx-pcs"
FAMILIES: tuple[tuple[bytes, str], ...] = (
    (DEFAULT_FMSPC, "processor"),
    (DEFAULT_EXTRA_FMSPCS[0], "platform"),
)
"""(FMSPC, PCK CA type) of the simulated nodes, by turns: a fleet of two CPU families."""
_PCS_TOKEN_SECONDS = 30 * 24 * 3600  # the PCS process lives as long as the cluster's up
_NODE_TOKEN_SECONDS = 600  # used once, to register
_READY_SECONDS = 60.0


def pcs_dir(layout: ClusterLayout) -> Path:
    """The simulated authority: root CA, PCK CAs and TCB-signing keys (the PCS's only)."""
    return layout.workdir / "sgx-pcs"


def root_ca(layout: ClusterLayout) -> Path:
    """The simulated root CA certificate, all a verifier needs to trust."""
    return pcs_dir(layout) / "root_ca.pem"


def tls_files(layout: ClusterLayout) -> TlsFiles:
    directory = layout.workdir / "sgx-pcs-tls"
    existing = TlsFiles.in_dir(directory)
    if all(p.exists() for p in (existing.ca, existing.certificate, existing.key)):
        return existing
    return generate(directory, ["127.0.0.1", "localhost"])


def url(layout: ClusterLayout) -> str:
    return f"https://127.0.0.1:{layout.ports[PROCESS]}"


def _process(layout: ClusterLayout) -> ManagedProcess:
    return ManagedProcess(PROCESS, layout.run_dir, layout.log_dir)


def ensure_pcs(layout: ClusterLayout) -> None:
    """Start the PCS (and what it needs) unless it runs; wait until it answers."""
    if PROCESS not in layout.ports:
        layout.ports[PROCESS] = free_port()
        layout.save()
    subprocess.run(
        [
            str(binary_path("kubectl")),
            f"--kubeconfig={layout.kubeconfig}",
            "apply",
            "--server-side",
            f"--filename={repo_root() / 'deploy' / 'cluster' / 'sgx-pcs.yaml'}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    process = _process(layout)
    tls = tls_files(layout)
    if process.pid() is None:
        ensure_authority(pcs_dir(layout))
        process.start(
            [
                sys.executable, "-m", "kubetee.cli", "pcs", "serve",
                f"--authority-dir={pcs_dir(layout)}",
                "--host=127.0.0.1", f"--port={layout.ports[PROCESS]}",
                f"--tls-cert={tls.certificate}", f"--tls-key={tls.key}",
                f"--kubeconfig={_pcs_kubeconfig(layout)}",
                f"--namespace={NAMESPACE}", f"--registry={REGISTRY_NAME}",
                f"--node-service-account={NAMESPACE}/{NODE_ACCOUNT}",
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    _wait_healthy(layout, tls, process)


def _wait_healthy(layout: ClusterLayout, tls: TlsFiles, process: ManagedProcess) -> None:
    context = ssl.create_default_context(cafile=str(tls.ca))
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        if process.pid() is None:
            raise ClusterError(
                f"the simulated PCS exited while starting; its log {process.log_file} ends:\n"
                f"{process.last_log_lines()}"
            )
        try:
            with urllib.request.urlopen(f"{url(layout)}/healthz", context=context, timeout=2):  # noqa: S310 - loopback
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise ClusterError(f"the simulated PCS did not answer within 60s; see {process.log_file}")


def _token(
    layout: ClusterLayout, account: str, seconds: int, audiences: list[str], node: str = ""
) -> str:
    core = client.CoreV1Api(sync_api_client(layout.kubeconfig))
    spec: dict[str, Any] = {"expirationSeconds": seconds, "audiences": audiences}
    if node:
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Node", "name": node}
    answer = core.create_namespaced_service_account_token(
        account, NAMESPACE, cast(Any, {"spec": spec})
    )
    if answer.status is None or not answer.status.token:
        raise ClusterError(f"the apiserver issued no token for {NAMESPACE}/{account}")
    return str(answer.status.token)


def _pcs_kubeconfig(layout: ClusterLayout) -> Path:
    """A kubeconfig that authenticates as the PCS's ServiceAccount (its RBAC applies)."""
    token = _token(layout, PCS_ACCOUNT, _PCS_TOKEN_SECONDS, [])
    path = layout.config_dir / "sgx-pcs.kubeconfig"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": layout.apiserver_url,
                    "certificate-authority": str(layout.pki_dir / "ca.crt"),
                },
            }
        ],
        "users": [{"name": PCS_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "pcs", "context": {"cluster": "local", "user": PCS_ACCOUNT}}],
        "current-context": "pcs",
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(yaml.safe_dump(config))
    return path


def certified_by_cluster_pcs(layout: ClusterLayout, platform_dir: Path) -> bool:
    """Whether a registered platform's PCK chain ends at this cluster's PCS root."""
    try:
        chain = SimulatedPlatform.load(platform_dir).pck_chain
        root = x509.load_pem_x509_certificate(root_ca(layout).read_bytes())
    except (OSError, ValueError, KeyError):
        return False
    return chain[-1] == root


def register_node(layout: ClusterLayout, node: str, platform_dir: Path) -> None:
    """Register ``node``'s platform with the running PCS, with a token bound to its Node."""
    token = _token(layout, NODE_ACCOUNT, _NODE_TOKEN_SECONDS, [PCS_AUDIENCE], node)
    for attempt in range(3):
        try:
            register(platform_dir, url(layout), token, ca_file=tls_files(layout).ca)
        except RegistrationError as error:
            if not error.retryable or attempt == 2:
                raise ClusterError(
                    f"node {node} could not register its SGX platform: {error.message}. "
                    f"The PCS logs to {_process(layout).log_file}."
                ) from None
            time.sleep(1.0)
        else:
            return
