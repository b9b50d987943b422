"""A whole attestation stack in one event loop, with real parts except the cluster.

A simulated authority and per-node platforms (real DCAP quotes), the real quoting
service on a Unix socket per node, the real KBS service over TLS on loopback with an
in-memory cluster (pods, EnclaveContainers, Secrets) and a controllable clock.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from enclave_runtime.quoting import QuotingClient
from enclave_runtime.quoting.provision import ensure_authority, provision
from enclave_runtime.quoting.server import create_app as create_quoting_app
from enclave_runtime.runtime.enclave import EnclaveIdentity, identity_of, load_signer
from enclave_runtime.runtime.settings import RuntimeSettings
from enclave_runtime.sgx.platform import SimulatedPlatform
from kubetee.api.v1alpha1 import EnclaveContainerSpec
from kubetee.attestation.policy import AttestationPolicy
from kubetee.attestation_service.app import KbsService, create_app
from kubetee.attestation_service.evidence import DcapEvidenceVerifier, RegisteredPlatforms
from kubetee.attestation_service.memory_backend import InMemoryCluster
from kubetee.attestation_service.replay import MemoryNonceLedger
from kubetee.attestation_service.sessions import PodRef, SessionSigner
from kubetee.attestation_service.tls import TlsFiles, generate, server_context
from kubetee.attestation_service.workloads import EnclaveContainerView, policy_hash
from kubetee.pcs.registry import InMemoryRegistry, record_for
from tests.kbs_serving import port_of, serving

NAMESPACE = "shop"
EC_NAME = "payments"
SECRET_VALUE = b"s3cr3t-db-password-\x00\xff-7f3a9c"
API_KEY_VALUE = b"api-key-0123456789"
ENCLAVE_FILE = "print('payments enclave')\n"


def ec_spec() -> EnclaveContainerSpec:
    return EnclaveContainerSpec.model_validate(
        {
            "epc": "64Mi",
            "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}},
            "attestation": {"policy": {"mrsigner": ["5e" * 32]}},
            "enclave": {
                "files": [{"path": "app.py", "content": ENCLAVE_FILE}],
                "isvProdId": 7,
                "isvSvn": 3,
            },
            "secrets": [
                {"name": "db", "secretKeyRef": {"name": "db", "key": "password"}, "file": "db"},
                {"name": "api", "secretKeyRef": {"name": "db", "key": "api"}, "env": "API_KEY"},
            ],
        }
    )


def enclave_config(*, debug: bool = False, isv_svn: int = 3, content: str = ENCLAVE_FILE) -> dict:
    """The runtime's KUBETEE_ENCLAVE_CONFIG for the test EnclaveContainer."""
    return {
        "enclaveContainer": {"namespace": NAMESPACE, "name": EC_NAME},
        "debug": debug,
        "threads": 4,
        "isvProdId": 7,
        "isvSvn": isv_svn,
        "files": [{"path": "app.py", "content": content}],
        "secrets": [{"name": "db", "file": "db"}, {"name": "api", "env": "API_KEY"}],
        "secretsDir": "/run/kubetee/secrets",
    }


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Stack:
    base_url: str
    tls: TlsFiles
    cluster: InMemoryCluster
    clock: Clock
    sockets: dict[str, Path]
    workdir: Path
    service: KbsService
    pods: list[PodRef] = field(default_factory=list)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca))

    def quoting(self, node: str = "node-a") -> QuotingClient:
        return QuotingClient(self.sockets[node])

    def add_pod(self, name: str, node: str = "node-a") -> PodRef:
        pod = PodRef(NAMESPACE, name, f"uid-{name}")
        self.cluster.pods[pod] = (EC_NAME, node)
        return pod

    def set_policy(self, **policy: object) -> None:
        # Built directly: the CRD's rules forbid some policies next to this enclave spec
        # (minIsvSvn above enclave.isvSvn), yet replicas from an older spec meet them.
        spec = ec_spec()
        accepted = AttestationPolicy.model_validate(policy)
        self.cluster.enclave_containers[(NAMESPACE, EC_NAME)] = EnclaveContainerView(
            namespace=NAMESPACE,
            name=EC_NAME,
            uid="uid-ec",
            policy=accepted,
            policy_hash=policy_hash(accepted),
            secrets={s.name: s.secret_key_ref for s in spec.secrets},
        )

    def runtime_settings(
        self, pod: PodRef, node: str = "node-a", **config: object
    ) -> RuntimeSettings:
        return RuntimeSettings(
            enclave_config=enclave_config(**config),  # type: ignore[arg-type]
            pod_name=pod.name,
            pod_uid=pod.uid,
            attestation_url=self.base_url,
            attestation_ca=self.tls.ca,
            quoting_socket=self.sockets[node],
            secrets_dir=self.workdir / f"secrets-{pod.name}",
            reattest_interval_seconds=3600,
            attest_timeout_seconds=5,
        )


def identity(settings: RuntimeSettings) -> EnclaveIdentity:
    return identity_of(settings.enclave_config, None, load_signer(None))


@pytest.fixture(scope="session")
def sim_dir() -> Iterator[Path]:
    # Short paths: Unix socket names are limited to about 100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="kbs-", dir="/tmp"))
    ensure_authority(directory / "authority")
    for node, status in (("node-a", "UpToDate"), ("node-b", "UpToDate"), ("old", "OutOfDate")):
        provision(directory / "authority", directory / node, node, tcb_status=status)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def stack(sim_dir: Path, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(sim_dir, tmp_path) as result:
        yield result


@contextlib.asynccontextmanager
async def running_stack(sim_dir: Path, tmp_path: Path) -> AsyncIterator[Stack]:
    """The service and the nodes' quoting services on the running event loop."""
    runners: list[web.AppRunner] = []
    sockets: dict[str, Path] = {}
    socket_dir = Path(tempfile.mkdtemp(prefix="q-", dir="/tmp"))
    for node in ("node-a", "node-b", "old"):
        runner = web.AppRunner(create_quoting_app(SimulatedPlatform.load(sim_dir / node), node))
        await runner.setup()
        sockets[node] = socket_dir / f"{node}.sock"
        await web.UnixSite(runner, str(sockets[node])).start()
        runners.append(runner)

    clock = Clock()
    cluster = InMemoryCluster()
    # Each node's platform registered for it, as the PCS records registrations.
    platforms = InMemoryRegistry()
    for node in ("node-a", "node-b", "old"):
        chain = SimulatedPlatform.load(sim_dir / node).pck_chain
        await platforms.record(record_for(node, chain[0], chain[1], "test"))
    cluster.secrets[(NAMESPACE, "db")] = {"password": SECRET_VALUE, "api": API_KEY_VALUE}
    service = KbsService(
        sessions=SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300),
        ledger=MemoryNonceLedger(),
        verifier=DcapEvidenceVerifier.for_simulator(sim_dir / "authority"),
        platforms=RegisteredPlatforms(platforms),
        workloads=cluster,
        reporter=cluster,
        clock=clock,
    )
    tls = generate(tmp_path / "tls", ["localhost", "127.0.0.1"])
    try:
        async with serving(create_app(service), server_context(tls.certificate, tls.key)) as kbs:
            url = f"https://127.0.0.1:{port_of(kbs)}"
            result = Stack(url, tls, cluster, clock, sockets, tmp_path, service)
            result.set_policy()
            yield result
    finally:
        for runner in runners:
            await runner.cleanup()
        shutil.rmtree(socket_dir, ignore_errors=True)
