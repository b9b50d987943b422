"""Faults injected one at a time into the running local cluster, as an operator of it would.

Each test kills (``kill -9``) or freezes (``SIGSTOP``) one real process: the
kube-apiserver, etcd, one attestation-service replica, a device plugin, a quoting
service, the operator. Nothing is restarted by hand: the cluster's supervisor
(``kubetee cluster supervise``, started by ``up``) restarts what dies and kills what
stops answering its liveness probe. Where a test must see the degraded state first, it
freezes the supervisor for that long. Each test asserts convergence (every replica
attested, Ready, the EnclaveContainer saying so), that no replica's runtime was
restarted and no delivered secret was lost, that while degraded no status says
healthy, and prints how long convergence took.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetee.attestation_service.tls import TlsFiles, generate
from kubetee.cluster import pcs
from kubetee.cluster.layout import ClusterLayout
from kubetee.cluster.processes import ManagedProcess, free_port
from kubetee.cluster.supervisor import PROCESS_NAME as SUPERVISOR
from tests.e2e.attestation_support import pod_dir
from tests.e2e.conftest import REPO_ROOT, E2ECluster
from tests.e2e.operator_support import SIMULATION_MRSIGNER, Api, condition, install_crds

pytestmark = pytest.mark.e2e

SECRET = b"faults-db-password-\x01\xfe"
EC = "payments"
REPLICAS = 2
ATTESTED = "kubetee.io/attested"
UNTIL = "kubetee.io/attested-until"
REATTEST = "kubetee.io/reattest-requested"
CONVERGE_SECONDS = 150.0
OVERDUE_SECONDS = 140


@dataclass
class Stack:
    """The services under test, run as processes of the cluster (so supervised)."""

    cluster: E2ECluster
    layout: ClusterLayout
    api: Api
    namespace: str
    urls: list[str]
    tls: TlsFiles
    replicas: list[ManagedProcess]
    operator: ManagedProcess

    def process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.layout.run_dir, self.layout.log_dir)

    def logs(self) -> str:
        parts = []
        for process in [*self.replicas, self.operator, self.process(SUPERVISOR)]:
            parts.append(f"--- {process.name}:\n{process.last_log_lines(25)}")
        return "\n".join(parts)


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return 0, {}


def _until(
    what: str, check: Callable[[], Any], stack: Stack, within: float = CONVERGE_SECONDS
) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        # An apiserver restarted but not listening yet refuses connections: the kubernetes
        # client gives up on them with urllib3's MaxRetryError, not an OSError.
        with contextlib.suppress(ApiException, OSError, urllib3.exceptions.HTTPError):
            last = check()
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(f"not within {within:.0f}s: {what} (last: {last!r})\n{stack.logs()}")


def _start_services(
    cluster: E2ECluster, workdir: Path, nonces: str
) -> tuple[list[str], TlsFiles, list[ManagedProcess], ManagedProcess]:
    layout = cluster.local_layout()
    tls = generate(workdir / "tls", ["127.0.0.1", "localhost"])
    key = workdir / "session.key"
    key.write_text(secrets.token_urlsafe(48))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    urls, replicas = [], []
    for replica in ("a", "b"):
        port = free_port()
        process = ManagedProcess(f"faults-attestation-{replica}", layout.run_dir, layout.log_dir)
        process.start(
            [
                sys.executable, "-m", "kubetee.cli", "attestation-service", "serve",
                "--host=127.0.0.1", f"--port={port}",
                f"--tls-cert={tls.certificate}", f"--tls-key={tls.key}",
                f"--session-key-file={key}", f"--namespace={nonces}",
                f"--instance=faults-{replica}",
                f"--pccs-url={pcs.url(layout)}", f"--pccs-ca={pcs.tls_files(layout).ca}",
                f"--root-ca={pcs.root_ca(layout)}", f"--platform-registry={pcs.REGISTRY}",
                "--metrics-port=0", f"--kubeconfig={cluster.kubeconfig}",
            ],
            env=env,
            cwd=REPO_ROOT,
            liveness=f"https://127.0.0.1:{port}/healthz",
        )  # fmt: skip
        urls.append(f"https://127.0.0.1:{port}")
        replicas.append(process)
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    operator = ManagedProcess("faults-operator", layout.run_dir, layout.log_dir)
    operator.start(
        [
            sys.executable, "-m", "kubetee.cli", "operator",
            f"--kubeconfig={cluster.kubeconfig}", f"--liveness={liveness}",
        ],
        env={
            **env,
            "KUBETEE_ATTESTATION_URL": ",".join(urls),
            "KUBETEE_ATTESTATION_CA": str(tls.ca),
            "KUBETEE_ATTESTATION_SWEEP_SECONDS": "1",
            "KUBETEE_ATTESTATION_PROBE_SECONDS": "1",
            "KUBETEE_REATTEST_GRACE_SECONDS": "8",
            # Runtimes renew every 120 s: a silence of 140 s is a missed renewal.
            "KUBETEE_REATTEST_OVERDUE_SECONDS": str(OVERDUE_SECONDS),
            "KUBETEE_STATUS_DELAY": "0.2",
            "KUBETEE_POOL_DELAY": "0.2",
            "KUBETEE_METRICS_PORT": "0",
        },
        cwd=REPO_ROOT,
        liveness=liveness,
    )  # fmt: skip
    return urls, tls, replicas, operator


@pytest.fixture(scope="module")
def stack(cluster: E2ECluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    layout = cluster.local_layout()
    if ManagedProcess(SUPERVISOR, layout.run_dir, layout.log_dir).pid() is None:
        pytest.fail(
            f"cluster {layout.name} runs no supervisor; bring it up with this checkout's "
            "`kubetee cluster up`, which starts it"
        )
    install_crds(cluster)
    api = Api(cluster)
    suffix = f"{os.getpid()}-{secrets.token_hex(3)}"
    nonces, namespace = f"faults-kbs-{suffix}", f"faults-{suffix}"
    for name in (nonces, namespace):
        api.core.create_namespace(
            {"metadata": {"name": name, "labels": {"kubetee.io/e2e": "true"}}}
        )
    urls, tls, replicas, operator = _start_services(
        cluster, tmp_path_factory.mktemp("faults"), nonces
    )
    result = Stack(cluster, layout, api, namespace, urls, tls, replicas, operator)
    try:
        for url in urls:
            _until(
                f"{url}/readyz",
                lambda url=url: _get(f"{url}/readyz", _context(result))[0] == 200,
                result,
            )
        yield result
    finally:
        for process in [operator, *replicas]:
            process.stop()  # on purpose: the supervisor leaves it stopped
        for name in (namespace, nonces):
            with contextlib.suppress(ApiException):
                api.core.delete_namespace(name)


def _context(stack: Stack) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(stack.tls.ca))


def _pods(stack: Stack) -> list[client.V1Pod]:
    return stack.api.pods(stack.namespace, EC)


def _attested(pod: client.V1Pod) -> bool:
    annotations = pod.metadata.annotations or {}
    return "kubetee.io/attested-claims" in annotations and any(
        c.type == ATTESTED and c.status == "True" and c.reason == "Attested"
        for c in (pod.status.conditions or [])
    )


def _secret_file(stack: Stack, pod: client.V1Pod) -> Path:
    return pod_dir(stack.cluster, pod) / "root" / "run" / "kubetee" / "secrets" / "db" / "pw"


def _runtime_starts(stack: Stack, pod: client.V1Pod) -> int:
    """How often the pod's runtime started (each start has attested from scratch)."""
    log = pod_dir(stack.cluster, pod) / "kubetee-runtime.log"
    if not log.exists():
        return 0
    marker = f"pod {pod.metadata.namespace}/{pod.metadata.name}: enclave"
    return log.read_text(errors="replace").count(marker)


def _healthy(stack: Stack, replicas: int = REPLICAS) -> list[client.V1Pod] | None:
    """Every replica attested with its secret, and the status saying exactly that."""
    pods = _pods(stack)
    if len(pods) != replicas or not all(_attested(p) for p in pods):
        return None
    if not all(_secret_file(stack, p).is_file() for p in pods):
        return None
    status = stack.api.ec(stack.namespace, EC)
    observed = status.get("status") or {}
    if observed.get("readyReplicas") != replicas or observed.get("attestedReplicas") != replicas:
        return None
    if any(condition(status, c).get("status") != "True" for c in ("Attested", "Ready")):
        return None
    return pods


@pytest.fixture(scope="module")
def workload(stack: Stack) -> list[client.V1Pod]:
    """An EnclaveContainer of two replicas holding a secret, attested and Ready."""
    stack.api.core.create_namespaced_secret(
        stack.namespace,
        {"metadata": {"name": "db"}, "data": {"password": base64.b64encode(SECRET).decode()}},
    )
    stack.api.apply(
        {
            "apiVersion": "kubetee.io/v1alpha1",
            "kind": "EnclaveContainer",
            "metadata": {"name": EC},
            "spec": {
                "replicas": REPLICAS,
                "epc": "16Mi",
                "template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}},
                "enclave": {"files": [{"path": "app.py", "content": "print('payments')\n"}]},
                "attestation": {"policy": {"mrsigner": [SIMULATION_MRSIGNER]}},
                "secrets": [
                    {
                        "name": "db",
                        "secretKeyRef": {"name": "db", "key": "password"},
                        "file": "db/pw",
                    }
                ],
            },
        },
        stack.namespace,
    )
    pods: list[client.V1Pod] = _until(
        "two attested, Ready replicas", lambda: _healthy(stack), stack
    )
    return pods


@contextlib.contextmanager
def _supervisor_paused(stack: Stack) -> Iterator[None]:
    """Hold the supervisor (SIGSTOP) so a fault lasts as long as the test needs."""
    pid = stack.process(SUPERVISOR).pid()
    assert pid is not None, "the cluster's supervisor is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _kill(process: ManagedProcess) -> int:
    pid = process.pid()
    assert pid is not None, f"{process.name} is not running"
    os.kill(pid, signal.SIGKILL)
    return pid


def _restarted(process: ManagedProcess, old: int) -> Callable[[], int | None]:
    def check() -> int | None:
        pid = process.pid()
        return pid if pid not in {None, old} else None

    return check


def _node_agents(stack: Stack) -> dict[str, int | None]:
    return {
        path.stem: stack.process(path.stem).pid()
        for path in stack.layout.run_dir.glob("node-*-node-agent.pid")
    }


def _report(what: str, seconds: float) -> None:
    sys.stderr.write(f"\n[faults] {what}: converged in {seconds:.1f}s\n")


def _nothing_lost(stack: Stack, before: dict[str, int], pods: list[client.V1Pod]) -> None:
    """The same replicas, their runtimes never restarted, their secret intact."""
    now = _pods(stack)
    assert {p.metadata.uid for p in now} == {p.metadata.uid for p in pods}
    for pod in now:
        assert _runtime_starts(stack, pod) == before[pod.metadata.uid], (
            f"the runtime of {pod.metadata.name} was restarted (its secrets were withdrawn)"
        )
        assert _secret_file(stack, pod).read_bytes() == SECRET


def _starts(stack: Stack, pods: list[client.V1Pod]) -> dict[str, int]:
    return {p.metadata.uid: _runtime_starts(stack, p) for p in pods}


def _request_reattestation(stack: Stack, pods: list[client.V1Pod], tag: str) -> None:
    for pod in pods:
        stack.api.core.patch_namespaced_pod(
            pod.metadata.name, stack.namespace, {"metadata": {"annotations": {REATTEST: tag}}}
        )


def _reattested(
    stack: Stack, pods: list[client.V1Pod], after: dict[str, str]
) -> Callable[[], bool]:
    def check() -> bool:
        current = {p.metadata.uid: (p.metadata.annotations or {}).get(UNTIL) for p in _pods(stack)}
        return all(current.get(uid) not in {None, old} for uid, old in after.items())

    return check


def _untils(pods: list[client.V1Pod]) -> dict[str, str]:
    return {p.metadata.uid: (p.metadata.annotations or {}).get(UNTIL, "") for p in pods}


def test_apiserver_killed_for_fifteen_seconds(stack: Stack, workload: list[client.V1Pod]) -> None:
    agents = _node_agents(stack)
    before = _starts(stack, workload)
    apiserver = stack.process("kube-apiserver")
    with _supervisor_paused(stack):
        old = _kill(apiserver)
        started = time.monotonic()
        time.sleep(15)
        # The outage itself: workloads keep their secrets, node agents keep running.
        for pod in workload:
            assert _secret_file(stack, pod).read_bytes() == SECRET
        assert _node_agents(stack) == agents, "a node agent died with the apiserver away"
    _until("the apiserver restarted", _restarted(apiserver, old), stack, within=60)
    _until("every replica attested and Ready again", lambda: _healthy(stack), stack)
    _report("kill -9 kube-apiserver (15 s outage)", time.monotonic() - started)
    assert _node_agents(stack) == agents
    _nothing_lost(stack, before, workload)


def test_etcd_killed_makes_the_attestation_service_unready_then_recovers(
    stack: Stack, workload: list[client.V1Pod]
) -> None:
    before = _starts(stack, workload)
    etcd = stack.process("etcd")
    with _supervisor_paused(stack):
        old = _kill(etcd)
        started = time.monotonic()
        # No attestation could complete: every replica says so at /readyz, with the cause.
        for url in stack.urls:
            _, body = _until(
                f"{url}/readyz to fail",
                lambda url=url: (
                    (answer := _get(f"{url}/readyz", _context(stack)))[0] == 503 and answer
                ),
                stack,
                within=30,
            )
            assert body["reason"] == "BackendUnavailable"
            assert "Kubernetes API" in body["detail"]
            assert _get(f"{url}/healthz", _context(stack))[0] == 200  # alive: no restart needed
    _until("etcd restarted", _restarted(etcd, old), stack, within=60)
    for url in stack.urls:
        _until(
            f"{url}/readyz to pass",
            lambda url=url: _get(f"{url}/readyz", _context(stack))[0] == 200,
            stack,
        )
    _until("every replica attested and Ready again", lambda: _healthy(stack), stack)
    _report("kill -9 etcd", time.monotonic() - started)
    _nothing_lost(stack, before, workload)


def test_one_attestation_replica_killed_runtimes_fail_over(
    stack: Stack, workload: list[client.V1Pod]
) -> None:
    before = _starts(stack, workload)
    first = stack.replicas[0]  # every runtime asks it first
    with _supervisor_paused(stack):
        old = _kill(first)
        started = time.monotonic()
        untils = _untils(_pods(stack))
        _request_reattestation(stack, workload, f"failover-{time.time():.0f}")
        _until(
            "every replica re-attested at the other replica",
            _reattested(stack, workload, untils),
            stack,
            within=60,
        )
        _report(
            "kill -9 one attestation replica: re-attested elsewhere", time.monotonic() - started
        )
        # One replica answers: no outage. (A status the operator queued during the last
        # test's etcd outage may still land first: wait it out, then require it to hold
        # for several probe rounds while this replica stays down.)
        _until(
            "the EnclaveContainer to say Attested with one replica down",
            lambda: _attested_condition(stack) == "True",
            stack,
            within=15,
        )
        for _ in range(6):
            time.sleep(0.5)
            assert _attested_condition(stack) == "True"
    for pod in workload:
        log = (pod_dir(stack.cluster, pod) / "kubetee-runtime.log").read_text(errors="replace")
        assert f"attestation service {stack.urls[0]} unavailable" in log
    _until(
        "the killed replica restarted and ready",
        lambda: (
            _restarted(first, old)() and _get(f"{stack.urls[0]}/readyz", _context(stack))[0] == 200
        ),
        stack,
        within=60,
    )
    _until("every replica attested and Ready", lambda: _healthy(stack), stack)
    _report("kill -9 one attestation replica: restarted", time.monotonic() - started)
    _nothing_lost(stack, before, workload)


def _node_of(pod: client.V1Pod) -> str:
    return str(pod.spec.node_name)


def _allocatable(stack: Stack, node: str) -> dict[str, str]:
    found = stack.api.core.read_node(node)
    return dict(found.status.allocatable or {})


def test_a_device_plugin_killed_is_restarted_and_nothing_is_lost(
    stack: Stack, workload: list[client.V1Pod]
) -> None:
    before = _starts(stack, workload)
    node = _node_of(workload[0])
    plugin = stack.process(f"node-{node}-device-plugin")
    full = _allocatable(stack, node)
    old = _kill(plugin)
    started = time.monotonic()
    _until("the device plugin restarted", _restarted(plugin, old), stack, within=60)
    _until(
        f"{node} advertising its devices again", lambda: _allocatable(stack, node) == full, stack
    )
    _until("every replica attested and Ready", lambda: _healthy(stack), stack)
    _report("kill -9 a device plugin", time.monotonic() - started)
    _nothing_lost(stack, before, workload)


def _attested_condition(stack: Stack) -> str:
    return str(condition(stack.api.ec(stack.namespace, EC), "Attested").get("status", ""))


def _attested_message(stack: Stack) -> str:
    return str(condition(stack.api.ec(stack.namespace, EC), "Attested").get("message", ""))


def test_a_quoting_service_killed_is_named_in_the_api_and_reattestation_resumes(
    stack: Stack, workload: list[client.V1Pod]
) -> None:
    before = _starts(stack, workload)
    pod = workload[0]
    node = _node_of(pod)
    quoting = stack.process(f"node-{node}-quoting-service")
    log = pod_dir(stack.cluster, pod) / "kubetee-runtime.log"
    with _supervisor_paused(stack):
        old = _kill(quoting)
        started = time.monotonic()
        seen = len(log.read_text(errors="replace"))
        untils = _untils([pod])
        _request_reattestation(stack, [pod], f"quoting-{time.time():.0f}")
        _until(
            "the runtime to meet the dead quoting service",
            lambda: "re-attestation not possible" in log.read_text(errors="replace")[seen:],
            stack,
            within=60,
        )
        # The cause, where a cluster user looks: the node and the EnclaveContainer.
        _until(
            f"{node} to advertise no usable enclave slot",
            lambda: _allocatable(stack, node).get("kubetee.io/enclave") == "0",
            stack,
            within=30,
        )
        message = _until(
            "the EnclaveContainer to name the node that cannot re-attest",
            lambda: (
                (m := _attested_message(stack)) and f"on node {node} cannot re-attest" in m and m
            ),
            stack,
            within=30,
        )
        assert "quoting service" in message
        assert _secret_file(stack, pod).read_bytes() == SECRET  # an outage is not a refusal
    _until("the quoting service restarted", _restarted(quoting, old), stack, within=60)
    _until("the replica re-attested", _reattested(stack, [pod], untils), stack, within=90)
    _until(
        "every replica attested, Ready, and no node named any more",
        lambda: _healthy(stack) and "cannot re-attest" not in _attested_message(stack),
        stack,
    )
    _report("kill -9 a quoting service", time.monotonic() - started)
    _nothing_lost(stack, before, workload)


def _pod_processes(stack: Stack, pod: client.V1Pod) -> set[int]:
    """Live processes of the pod's sidecars and workload (their KUBETEE_ROOT is its root)."""
    marker = f"KUBETEE_ROOT={pod_dir(stack.cluster, pod) / 'root'}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.add(int(entry.name))
    return found


def _runtime_process(stack: Stack, pod: client.V1Pod) -> int:
    """The pod's runtime sidecar (``kubetee runtime``), among its processes."""
    for pid in _pod_processes(stack, pod):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[-3:] == [b"kubetee.cli", b"runtime", b""]:
                return pid
    raise AssertionError(f"no runtime process runs for {pod.metadata.name}")


def test_a_node_agent_killed_adopts_its_running_runtimes(
    stack: Stack, workload: list[client.V1Pod]
) -> None:
    before = _starts(stack, workload)
    pod = workload[0]
    node = _node_of(pod)
    agent = stack.process(f"node-{node}-node-agent")
    log = stack.layout.log_dir / f"{agent.name}.log"
    running = _pod_processes(stack, pod)
    assert running, f"no process runs for {pod.metadata.name}"
    seen = len(log.read_text(errors="replace"))
    old = _kill(agent)
    started = time.monotonic()
    _until("the node agent restarted", _restarted(agent, old), stack, within=60)
    _until(
        "the restarted agent to adopt the running runtime",
        lambda: (
            f"pod {stack.namespace}/{pod.metadata.name}: adopted sidecar"
            in log.read_text(errors="replace")[seen:]
        ),
        stack,
        within=30,
    )
    time.sleep(3)  # several of its syncs: a second runtime would have started by now
    assert _pod_processes(stack, pod) == running, "the agent started a second runtime"
    _until("every replica attested and Ready", lambda: _healthy(stack), stack)
    _report("kill -9 a node agent (runtimes adopted)", time.monotonic() - started)
    _nothing_lost(stack, before, workload)

    # The adopted runtime is supervised as before: when it dies it is started again.
    runtime = _runtime_process(stack, pod)
    untils = _untils([pod])
    os.kill(runtime, signal.SIGKILL)
    _until(
        "the agent to restart the adopted runtime, and it to attest again",
        lambda: (
            _runtime_starts(stack, pod) == before[pod.metadata.uid] + 1
            and _reattested(stack, [pod], untils)()
        ),
        stack,
        within=90,
    )
    _until("every replica attested and Ready", lambda: _healthy(stack), stack)


def _events(stack: Stack, reason: str) -> list[client.CoreV1Event]:
    found = stack.api.core.list_namespaced_event(
        stack.namespace, field_selector=f"reason={reason}"
    ).items
    return [e for e in found if e.involved_object.name == EC]


def test_a_hung_runtime_is_named_before_its_attestation_expires(
    stack: Stack, workload: list[client.V1Pod]
) -> None:
    """A cause the cluster cannot see (the runtime hangs; the service and node are fine)
    still reaches the API: a Warning names the replica while it is still attested."""
    _until("every replica attested and Ready", lambda: _healthy(stack), stack)
    pod = _pods(stack)[0]
    runtime = _runtime_process(stack, pod)
    os.kill(runtime, signal.SIGSTOP)
    started = time.monotonic()
    try:
        warning = _until(
            "a ReattestationOverdue Warning naming the hung replica",
            lambda: next(iter(_events(stack, "ReattestationOverdue")), None),
            stack,
            within=OVERDUE_SECONDS + 60,
        )
        assert warning.type == "Warning"
        assert f"pod {pod.metadata.name} has not renewed its attestation" in warning.message
        assert "kubectl logs" in warning.message
        _report("a hung runtime named in a Warning", time.monotonic() - started)
        assert _attested(stack.api.core.read_namespaced_pod(pod.metadata.name, stack.namespace))
        named = _until(
            "the Attested condition to name the replica",
            lambda: (
                (c := condition(stack.api.ec(stack.namespace, EC), "Attested")).get("reason")
                == "ReattestationOverdue"
                and c
            ),
            stack,
            within=30,
        )
        assert named["status"] == "True"  # still attested until it expires
        assert f"{pod.metadata.name} stopped renewing" in named["message"]
    finally:
        os.kill(runtime, signal.SIGCONT)
    # Its next round was due while it hung, so it renews as soon as it runs again, also
    # when it was stopped inside a round (the service had attested it; it finishes that
    # round and starts the next).
    _until(
        "a ReattestationResumed Event once it renews",
        lambda: _events(stack, "ReattestationResumed"),
        stack,
        within=90,
    )
    assert len(_events(stack, "ReattestationOverdue")) == 1  # the other replica renewed
    _until(
        "the Attested condition to stop naming it",
        lambda: (
            condition(stack.api.ec(stack.namespace, EC), "Attested").get("reason")
            == "ReplicasAttested"
        ),
        stack,
        within=30,
    )
    _until("every replica attested and Ready", lambda: _healthy(stack), stack)


def test_a_frozen_operator_is_replaced_and_catches_up(
    stack: Stack, workload: list[client.V1Pod]
) -> None:
    operator = stack.operator
    old = operator.pid()
    assert old is not None
    os.kill(old, signal.SIGSTOP)
    started = time.monotonic()
    try:
        stack.cluster.kubectl("scale", f"--namespace={stack.namespace}", f"ec/{EC}", "--replicas=3")
        _until(
            "the supervisor to replace the frozen operator",
            _restarted(operator, old),
            stack,
            within=60,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old, signal.SIGCONT)
    _until("three attested, Ready replicas", lambda: _healthy(stack, replicas=3), stack)
    _report("SIGSTOP the operator (then a scale to 3)", time.monotonic() - started)
    text = (stack.layout.log_dir / f"{SUPERVISOR}.log").read_text(errors="replace")
    assert re.search(r"faults-operator does not answer its liveness probe", text)
