"""Shared pieces of the attestation benchmarks: the service in worker processes, whole
attestations as the runtime makes them, and the real apiserver of a local cluster with
meters for its CPU and the writes the service sends it.

Not a benchmark itself (``attestation.py`` and ``reattestation_steady_state.py`` are).
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import re
import signal
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import uvloop
import yaml
from kubernetes import client, config

from enclave_runtime.kbs_protocol import (
    Attestation,
    CompositeEvidence,
    RuntimeData,
    SgxEvidence,
    TeeKeyPair,
    decrypt_response,
    report_data_for,
)
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.kbs_protocol.init_data import PodIdentity, pod_launch_data
from enclave_runtime.sgx.enclave import make_report_body
from enclave_runtime.sgx.platform import SimulatedPlatform
from kubetee.api.v1alpha1 import SecretKeyRef
from kubetee.attestation.policy import AttestationPolicy
from kubetee.attestation_service.app import KbsService, create_app
from kubetee.attestation_service.cluster_cache import ClusterCache
from kubetee.attestation_service.connections import ConnectionLimits, start
from kubetee.attestation_service.evidence import DcapEvidenceVerifier, RegisteredPlatforms
from kubetee.attestation_service.kubernetes_backend import KubernetesBackend
from kubetee.attestation_service.memory_backend import InMemoryCluster
from kubetee.attestation_service.replay import LeaseNonceLedger, MemoryNonceLedger, NonceLedger
from kubetee.attestation_service.sessions import PodRef, SessionSigner
from kubetee.attestation_service.tls import server_context
from kubetee.attestation_service.workloads import EnclaveContainerView, policy_hash
from kubetee.cluster.cluster import LocalCluster
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.processes import ManagedProcess
from kubetee.pcs.registry import InMemoryRegistry, record_for

REPO = Path(__file__).resolve().parents[1]
NAMESPACE, EC = "bench", "payments"
SECRET = b"benchmark-secret-value"
MRENCLAVE = bytes(range(32))
MRSIGNER = bytes(range(32, 64))
NODE = "node-a"
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def policy() -> AttestationPolicy:
    return AttestationPolicy(mrenclave=[MRENCLAVE.hex()], min_isv_svn=1)


# -- the service ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """How to run the service under test; picklable for its worker processes."""

    workdir: Path
    port: int
    workers: int
    pods: int
    kubeconfig: Path | None = None  # None: the in-memory cluster
    ledger: str = "replica"  # or "lease": the previous hot path, for comparison
    node: str = NODE  # where the pods run: the simulated platform is registered for it
    loop: str = "uvloop"  # the service's event loop (production: uvloop), or "asyncio"


LOOPS = ("uvloop", "asyncio")
_T = TypeVar("_T")


def run_on(loop: str, main: Coroutine[Any, Any, _T]) -> _T:
    """``main`` on the named event loop: uvloop, as the service and the runtime run, or
    asyncio's own, to compare."""
    if loop == "uvloop":
        return uvloop.run(main)
    return asyncio.run(main)


def process_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (the third is the
    process group, the twelfth and thirteenth its user and system CPU ticks)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU the process ``pid`` has used so far."""
    fields = process_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_field(pid: int, name: str) -> int:
    """The number in the ``name:`` line of the process's ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"process {pid} reports no {name}")


def process_rss_kib(pid: int) -> int:
    """The process's resident memory now, in KiB."""
    return _status_field(pid, "VmRSS")


def process_waits(pid: int) -> int:
    """How often the process has given up its CPU to wait (voluntary context switches):
    an event loop that never runs out of work hardly ever does."""
    return _status_field(pid, "voluntary_ctxt_switches")


class _CountingRest:
    """Counts the writes a kubernetes ApiClient sends (the service's apiserver writes),
    kept current in ``path`` so the benchmark can read them while the service runs."""

    def __init__(self, rest: Any, path: Path) -> None:
        self._rest = rest
        self._path = path
        self._lock = threading.Lock()
        self.writes = 0
        path.write_text("0")

    def request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() in _WRITES:
            with self._lock:
                self.writes += 1
                self._path.write_text(str(self.writes))
        return self._rest.request(method, *args, **kwargs)


def _memory_cluster(pods: int) -> InMemoryCluster:
    cluster = InMemoryCluster()
    accepted = policy()
    cluster.enclave_containers[(NAMESPACE, EC)] = EnclaveContainerView(
        NAMESPACE, EC, "uid-ec", accepted, policy_hash(accepted), {"db": _db_ref()}
    )
    cluster.secrets[(NAMESPACE, "db")] = {"pw": SECRET}
    for index in range(pods):
        cluster.pods[PodRef(NAMESPACE, f"pod-{index}", f"uid-{index}")] = (EC, NODE)
    return cluster


def _db_ref() -> SecretKeyRef:
    return SecretKeyRef(name="db", key="pw")


class _NoOutcomes:
    """Reporter that keeps nothing (a long run must not grow memory)."""

    async def attested(self, *_: object) -> None:
        return None

    async def refused(self, *_: object) -> None:
        return None


def _worker(spec: ServerSpec) -> None:
    """One service process: binds the shared port and serves until SIGINT or SIGTERM."""
    run_on(spec.loop, _serve_until_stopped(spec, service_for(spec)))


def service_for(spec: ServerSpec) -> KbsService:
    """The service one worker process runs: its cluster (in memory or the apiserver's,
    watched), nonce ledger and the simulated authority's verifier."""
    ledger: NonceLedger = MemoryNonceLedger()
    replica = os.urandom(8).hex() if spec.ledger == "replica" else None
    if spec.kubeconfig is None:
        cluster = _memory_cluster(spec.pods)
        workloads: Any = cluster
        reporter: Any = _NoOutcomes()
    else:
        api = config.new_client_from_config(str(spec.kubeconfig))
        api.configuration.connection_pool_maxsize = 32
        api.rest_client = _CountingRest(api.rest_client, spec.workdir / f"writes-{os.getpid()}")
        cache = ClusterCache(api)
        cache.start()
        for watched in cache.caches():  # the service refuses until then: wait, as /readyz does
            if not watched.wait_synced(60):
                raise SystemExit(f"the {watched.kind} cache did not sync within 60 s")
        workloads = reporter = KubernetesBackend(api, cache, instance=f"bench-{os.getpid()}")
        if spec.ledger == "lease":
            ledger = LeaseNonceLedger(client.CoordinationV1Api(api), NAMESPACE, "bench")
    return KbsService(
        sessions=SessionSigner(
            b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300, replica=replica
        ),
        ledger=ledger,
        verifier=DcapEvidenceVerifier.for_simulator(spec.workdir / "authority"),
        platforms=_platforms(spec.workdir, spec.node),
        workloads=workloads,
        reporter=reporter,
        simulator=True,
    )


async def _serve_until_stopped(spec: ServerSpec, service: KbsService) -> None:
    tls = spec.workdir / "tls"
    serving = await start(
        create_app(service),
        host="127.0.0.1",
        port=spec.port,
        ssl_context=server_context(tls / "tls.crt", tls / "tls.key"),
        limits=ConnectionLimits(max_connections=1024, keepalive_timeout=15, handshake_timeout=10),
        reuse_port=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await serving.close()


def _platforms(workdir: Path, node: str) -> RegisteredPlatforms:
    """The simulated platform registered for ``node``, as the PCS records it."""
    registry = InMemoryRegistry()
    chain = SimulatedPlatform.load(workdir / NODE).pck_chain
    registry.records[node] = record_for(node, chain[0], chain[1], "benchmark")
    return RegisteredPlatforms(registry)


class Service:
    """The service's worker processes, started and stopped together."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        context = multiprocessing.get_context("spawn")
        self._processes = [
            context.Process(target=_worker, args=(spec,), daemon=True) for _ in range(spec.workers)
        ]
        for old in spec.workdir.glob("writes-*"):
            old.unlink()

    def __enter__(self) -> Service:
        for process in self._processes:
            process.start()
        return self

    def __exit__(self, *_: object) -> None:
        for process in self._processes:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGINT)
        for process in self._processes:
            process.join(timeout=30)

    def cpu_seconds(self) -> float:
        """User and system CPU all worker processes have used so far."""
        return sum(self.cpu_seconds_by_worker())

    def cpu_seconds_by_worker(self) -> list[float]:
        """Each worker process's user and system CPU so far."""
        return [process_cpu_seconds(p.pid) for p in self._processes if p.pid is not None]

    def waits(self) -> int:
        """The workers' voluntary context switches so far, summed."""
        return sum(process_waits(p.pid) for p in self._processes if p.pid is not None)

    def rss_kib(self) -> int:
        """The workers' resident memory now, in KiB, summed."""
        return sum(process_rss_kib(p.pid) for p in self._processes if p.pid is not None)

    def writes(self) -> int:
        """The apiserver writes the workers have sent so far."""
        return sum(int(p.read_text()) for p in self.spec.workdir.glob("writes-*"))


# -- clients ------------------------------------------------------------------------------


async def attest_once(
    url: str, context: ssl.SSLContext, platform: SimulatedPlatform, pod: PodRef
) -> None:
    """One whole attestation on a new connection (as runtimes did before they kept one)."""
    async with KbsClient(url, ssl_context=context) as kbs:
        await attest_on(kbs, platform, pod)


async def attest_on(kbs: KbsClient, platform: SimulatedPlatform, pod: PodRef) -> None:
    """One whole attestation as the runtime makes it on its (kept) client: a new TEE key,
    /auth, a quote bound to this session's nonce and key, /attest, /resource, the secret
    unwrapped. Nothing is reused from an earlier round but the connection and, as in the
    runtime, the pod's init-data and CONFIGID (made once per pod)."""
    key = TeeKeyPair.generate()
    launch = pod_launch_data(PodIdentity(pod.namespace, pod.name, pod.uid))
    challenge = await kbs.auth()
    data = RuntimeData(nonce=challenge.nonce, tee_pubkey=key.public_jwk())
    body = make_report_body(
        MRENCLAVE,
        MRSIGNER,
        debug=False,
        isv_prod_id=1,
        isv_svn=2,
        report_data=report_data_for(data),
        config_id=launch.config_id,
    )
    evidence = SgxEvidence(quote=base64.b64encode(platform.quote(body)).decode())
    await kbs.attest(
        Attestation(
            init_data=launch.init_data,
            runtime_data=data,
            tee_evidence=CompositeEvidence(primary_evidence=evidence.to_wire()),
        )
    )
    released = await kbs.resource(NAMESPACE, EC, "db")
    if decrypt_response(released, key) != SECRET:
        raise RuntimeError("released secret does not match")


async def wait_ready(url: str, context: ssl.SSLContext) -> None:
    for _ in range(600):
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz", ssl=context):
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the attestation service did not start")


# -- the real apiserver -----------------------------------------------------------------


class Apiserver:
    """A local cluster's control plane (no SGX node services) for the benchmark."""

    def __init__(self, workdir: Path) -> None:
        self.layout = ClusterLayout.for_name(f"bench-{os.getpid()}", workdir)
        self.cluster = LocalCluster(self.layout)

    def __enter__(self) -> Apiserver:
        self.cluster.up(nodes=1, node_services=False)
        self.api = config.new_client_from_config(str(self.layout.kubeconfig))
        return self

    def __exit__(self, *_: object) -> None:
        self.cluster.down(purge=True)

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    def node(self) -> str:
        return str(client.CoreV1Api(self.api).list_node().items[0].metadata.name)

    def cpu_seconds(self) -> float:
        """User and system CPU the kube-apiserver process has used so far."""
        pid = ManagedProcess("kube-apiserver", self.layout.run_dir, self.layout.log_dir).pid()
        if pid is None:
            raise RuntimeError("kube-apiserver is not running")
        return process_cpu_seconds(pid)

    def mutating_requests(self) -> int:
        """All writes the apiserver has served (any client), from its own metrics."""
        return sum(self.mutating_requests_by_resource().values())

    def mutating_requests_by_resource(self) -> dict[str, int]:
        """The writes the apiserver has served (any client) by resource, e.g.
        ``pods``, ``pods/status``, ``leases``, ``events``."""
        response = self.api.call_api("GET", f"{self.api.configuration.host}/metrics")
        totals: dict[str, float] = {}
        for line in response.read().decode().splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            verb = re.search(r'verb="([A-Z]+)"', line)
            if not (verb and verb.group(1) in _WRITES):
                continue
            resource = re.search(r'resource="([^"]*)"', line)
            subresource = re.search(r'subresource="([^"]*)"', line)
            name = resource.group(1) if resource else "?"
            if subresource and subresource.group(1):
                name = f"{name}/{subresource.group(1)}"
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return {name: int(count) for name, count in totals.items()}

    def prepare(self, pods: int, progress: Callable[[str], None]) -> list[PodRef]:
        """CRDs, the namespace, the Secret, an EnclaveContainer and ``pods`` replicas
        bound to the cluster's node, as the operator would have made them."""
        extensions = client.ApiextensionsV1Api(self.api)
        for path in sorted((REPO / "crds").glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                if document:
                    extensions.create_custom_resource_definition(document)
        core = client.CoreV1Api(self.api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        _wait_for(lambda: _has_default_account(core), "the default ServiceAccount")
        core.create_namespaced_secret(
            NAMESPACE, {"metadata": {"name": "db"}, "stringData": {"pw": SECRET.decode()}}
        )
        custom = client.CustomObjectsApi(self.api)
        _wait_for(lambda: _crd_served(custom), "the EnclaveContainer CRD")
        custom.create_namespaced_custom_object(
            "kubetee.io", "v1alpha1", NAMESPACE, "enclavecontainers", _enclave_container()
        )
        node = self.node()
        refs: list[PodRef] = []
        for index in range(pods):
            if index % 100 == 0:
                progress(f"creating replica pods {index}/{pods}")
            created = core.create_namespaced_pod(NAMESPACE, _pod(f"pod-{index}", node))
            refs.append(PodRef(NAMESPACE, created.metadata.name, created.metadata.uid))
        return refs


def _has_default_account(core: client.CoreV1Api) -> bool:
    return any(
        a.metadata.name == "default" for a in core.list_namespaced_service_account(NAMESPACE).items
    )


def _crd_served(custom: client.CustomObjectsApi) -> bool:
    try:
        custom.list_namespaced_custom_object(
            "kubetee.io", "v1alpha1", NAMESPACE, "enclavecontainers"
        )
    except client.ApiException:
        return False
    return True


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _enclave_container() -> dict[str, Any]:
    return {
        "apiVersion": "kubetee.io/v1alpha1",
        "kind": "EnclaveContainer",
        "metadata": {"name": EC},
        "spec": {
            "replicas": 1,
            "epc": "64Mi",
            "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}},
            "attestation": {
                "policy": policy().model_dump(mode="json", by_alias=True, exclude_none=True)
            },
            "enclave": {
                "files": [{"path": "app.py", "content": "print('bench')\n"}],
                "isvProdId": 1,
                "isvSvn": 2,
            },
            "secrets": [{"name": "db", "secretKeyRef": {"name": "db", "key": "pw"}, "file": "db"}],
        },
    }


def _pod(name: str, node: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubetee.io/enclave-container": EC}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "app:1"}],
            # KWOK plays the node: the pods need nothing from it.
            "tolerations": [{"operator": "Exists"}],
        },
    }


def dump(figures: dict[str, Any]) -> str:
    return json.dumps(figures)
