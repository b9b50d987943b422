"""KubeTEE on a real kind cluster: the image, the chart, the story, an upgrade.

The steps are the kind demo's own (``kubetee demo --kind``), run once in order by a
module fixture; each test then checks the cluster's state itself, through kubectl, so
the demo's printing is not what is tested. Order matters (the workload is deployed once,
the HPA scales it, the upgrade rolls it), so the tests run in file order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import yaml

from kubetee.cluster.toolchain import binary_path
from kubetee.controller.enclave_container import ENCLAVE_CONTAINER, PRIVATE_VOLUME
from kubetee.demo import kind_story
from kubetee.demo.kind_access import KindClusterAccess, build_local_image
from kubetee.demo.kind_story import (
    EC_LABEL,
    EC_NAME,
    NAMESPACE,
    RELEASE,
    RELEASE_NAMESPACE,
    TAMPERED,
    KindDemo,
)
from kubetee.image.cli import DEFAULT_TAG
from kubetee.pcs.api import TCB_PATH
from kubetee.tcb.names import FMSPC_LABEL
from tests.kind.conftest import Kind, repo_path

pytestmark = [pytest.mark.e2e, pytest.mark.kind]

IMAGE = DEFAULT_TAG  # `kubetee image build`'s default, which the enclave-image test uses too
UPGRADE_TAG = "0.1.0-kind-upgrade"
T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    explain: Callable[[], str] | None = None,
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f}s: {what}\n{explain() if explain else ''}")


def story_state(kind: Kind) -> str:
    """What a user would look at when the story stalls: the workload's status, its pods,
    the release's pods, recent events and the operator's last words."""
    views = [
        ("get", "ec", "-n", NAMESPACE, "-o", "yaml"),
        ("get", "pods", "-n", NAMESPACE, "-o", "wide", "--show-labels"),
        ("get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide"),
        ("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp"),
        ("describe", "pods", "-n", NAMESPACE, "-l", f"{EC_LABEL}={EC_NAME}"),
        ("logs", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/component=operator",
         "--tail=80", "--all-containers"),
        ("logs", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/component=attestation",
         "--tail=40", "--all-containers"),
    ]  # fmt: skip
    parts = []
    for view in views:
        proc = kind.run_kubectl(*view)
        parts.append(f"$ kubectl {' '.join(view)}\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def demo(kind: Kind) -> KindDemo:
    story = KindDemo(KindClusterAccess(kind.cluster), IMAGE, build_local_image, sys.stderr)
    story.cluster_up()
    story.image_loaded()
    story.install_chart()
    return story


def _pods(kind: Kind, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", "pods", "-n", namespace]
    if selector:
        args += ["-l", selector]
    items: list[dict[str, Any]] = kind.json(*args)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _ec(kind: Kind, name: str) -> dict[str, Any]:
    body: dict[str, Any] = kind.json("get", "ec", name, "-n", NAMESPACE)
    return body


def test_every_component_runs_as_a_pod_in_containerd(demo: KindDemo, kind: Kind) -> None:
    pods = _pods(kind, RELEASE_NAMESPACE)
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert {"operator", "attestation", "pcs", "node", "scheduler", "metrics-apiserver"} <= (
        components
    )
    for pod in pods:
        if pod["metadata"].get("annotations", {}).get("helm.sh/hook"):
            continue
        assert pod["status"]["phase"] == "Running", pod["metadata"]["name"]
        for status in pod["status"]["containerStatuses"]:
            assert status["ready"], (pod["metadata"]["name"], status["name"])
            assert status["containerID"].startswith("containerd://")
    values = yaml.safe_load(repo_path("deploy", "kind", "values.yaml").read_text())
    workers = kind.json("get", "nodes", "-l", "kubetee.io/sgx=true")["items"]
    assert len(workers) == 2
    for node in workers:
        # Advertised by the device plugin pod to this node's real kubelet.
        assert node["status"]["capacity"]["kubetee.io/epc"] == str(values["devicePlugin"]["epcMiB"])
        assert node["status"]["allocatable"]["kubetee.io/enclave"] == str(
            values["devicePlugin"]["enclaves"]
        )


def test_the_attestation_service_runs_a_worker_per_whole_cpu_of_its_limit(
    demo: KindDemo, kind: Kind
) -> None:
    # deploy/kind/values.yaml: --workers=0 under a limit of 1.5 CPUs, on nodes of more.
    values = yaml.safe_load(repo_path("deploy", "kind", "values.yaml").read_text())
    service = values["attestationService"]
    assert (service["workers"], service["resources"]["limits"]["cpu"]) == (0, "1500m")
    pods = _pods(kind, RELEASE_NAMESPACE, "app.kubernetes.io/component=attestation")
    assert pods
    for pod in pods:
        node = kind.json("get", "node", pod["spec"]["nodeName"])
        assert int(node["status"]["capacity"]["cpu"]) >= 2  # affinity alone would say more
        log = kind.kubectl("logs", "-n", RELEASE_NAMESPACE, pod["metadata"]["name"])
        assert "1 worker process(es) serve port" in log, log[-3000:]


def test_helm_test_passes(demo: KindDemo, kind: Kind) -> None:
    result = subprocess.run(
        [str(binary_path("helm")), f"--kubeconfig={kind.cluster.paths.kubeconfig}",
         "test", RELEASE, "-n", RELEASE_NAMESPACE, "--timeout=5m"],
        capture_output=True, text=True, check=False, timeout=360,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    phases = [line.split()[-1] for line in result.stdout.splitlines() if "Phase:" in line]
    assert phases
    assert set(phases) == {"Succeeded"}


def test_replicas_attest_and_the_workload_reads_the_secret(demo: KindDemo, kind: Kind) -> None:
    demo.deploy_workload()
    secret = kind.json("get", "secret", "demo-db", "-n", NAMESPACE)
    expected = hashlib.sha256(base64.b64decode(secret["data"]["password"])).hexdigest()
    replicas = _pods(kind, NAMESPACE, f"{EC_LABEL}={EC_NAME}")
    assert len(replicas) == 3
    for pod in replicas:
        name = pod["metadata"]["name"]
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions["kubetee.io/attested"] == "True"
        assert conditions["Ready"] == "True"
        # The workload inside the enclave serves the hash of the secret it received.
        assert demo.served_hash(name) == expected
        # No other container mounts the enclave's private volume or shares its processes.
        mounting = [
            c["name"]
            for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
            for m in c.get("volumeMounts", [])
            if m["name"] == PRIVATE_VOLUME
        ]
        assert mounting == [ENCLAVE_CONTAINER]
        assert not pod["spec"].get("shareProcessNamespace")
        # The secret never shows in the pod spec, its annotations or the replica's status.
        plain = base64.b64decode(secret["data"]["password"]).decode()
        assert plain not in json.dumps(pod)


def test_invalid_objects_are_refused_by_the_apiserver(demo: KindDemo, kind: Kind) -> None:
    _, ec = kind_story.example_manifests()
    ec["metadata"] = {"name": "never"}
    # A policy that pins no enclave identity would hand the secret to any enclave.
    del ec["spec"]["attestation"]["policy"]["mrenclave"]
    del ec["spec"]["attestation"]["policy"]["mrsigner"]
    result = subprocess.run(
        [str(kind.cluster.kubectl), "--kubeconfig", str(kind.cluster.paths.kubeconfig),
         "apply", "-n", NAMESPACE, "-f", "-"],
        input=yaml.safe_dump(ec), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "attestation.policy pins no enclave identity" in result.stderr
    assert not kind.json("get", "ec", "-n", NAMESPACE, "--field-selector=metadata.name=never")[
        "items"
    ]


def test_a_tampered_workload_gets_no_secret(demo: KindDemo, kind: Kind) -> None:
    demo.tampered_workload()  # checks the refusal Event and that the workload never served
    events = kind.json(
        "get", "events", "-n", NAMESPACE,
        f"--field-selector=involvedObject.name={TAMPERED},reason=MeasurementMismatch",
    )["items"]  # fmt: skip
    assert events
    assert not _pods(kind, NAMESPACE, f"{EC_LABEL}={TAMPERED}")


def test_the_hpa_scales_on_memory_the_replicas_really_use(demo: KindDemo, kind: Kind) -> None:
    before = _ec(kind, EC_NAME)["spec"]["replicas"]
    demo.autoscale()  # waits for >= 5 replicas under load, then <= 2 once freed
    hpa = kind.json("get", "hpa", EC_NAME, "-n", NAMESPACE)
    assert before == 3
    # The HPA's own decision (its currentReplicas trails by a sync period).
    assert hpa["status"]["desiredReplicas"] <= 2
    assert _ec(kind, EC_NAME)["spec"]["replicas"] <= 2
    events = kind.json(
        "get", "events", "-n", NAMESPACE, "--field-selector=reason=SuccessfulRescale"
    )["items"]
    reasons = {e["message"].split("reason: ")[-1] for e in events}
    assert "pods metric epc_utilization above target" in reasons


def _live_replicas(kind: Kind) -> list[dict[str, Any]]:
    """The EnclaveContainer's replicas, without pods a kubelet refused at admission.

    While the node DaemonSet rolls, a kubelet may refuse a new replica (its quoting
    service restarting leaves the enclave slots unhealthy). Kubernetes leaves such a pod
    Failed and the ReplicaSet replaces it: it is not a replica. Any other failure is.
    """
    pods = _pods(kind, NAMESPACE, f"{EC_LABEL}={EC_NAME}")
    failed = [p for p in pods if p["status"].get("phase") == "Failed"]
    assert all(p["status"].get("reason") == "UnexpectedAdmissionError" for p in failed), [
        (p["metadata"]["name"], p["status"].get("reason")) for p in failed
    ]
    return [p for p in pods if p not in failed]


def _replicas_ready(kind: Kind, count: int) -> list[dict[str, Any]] | None:
    status = _ec(kind, EC_NAME).get("status") or {}
    replicas = _live_replicas(kind)
    ready = [p for p in replicas if _ready(p)]
    if status.get("attestedReplicas") == count and len(replicas) == len(ready) == count:
        return replicas
    return None


def _node_pods(kind: Kind) -> dict[str, str]:
    """Node name -> UID of the node DaemonSet's pod there."""
    pods = _pods(kind, RELEASE_NAMESPACE, "app.kubernetes.io/component=node")
    return {p["spec"]["nodeName"]: p["metadata"]["uid"] for p in pods}


def _epc(kind: Kind) -> dict[str, tuple[str, str]]:
    nodes = kind.json("get", "nodes", "-l", "kubetee.io/sgx=true")["items"]
    return {
        n["metadata"]["name"]: (
            n["status"]["capacity"].get("kubetee.io/epc", "0"),
            n["status"]["allocatable"].get("kubetee.io/epc", "0"),
        )
        for n in nodes
    }


def test_node_daemonset_rollout_leaves_running_replicas_untouched(
    demo: KindDemo, kind: Kind
) -> None:
    """A platform software upgrade (helm upgrade rolling the node DaemonSet: a new device
    plugin registering with the kubelet, a new quoting service on the socket) while
    replicas run: none of them restarts or loses readiness or its attestation, the nodes
    advertise their EPC again, and a replica started after the rollout attests through
    the new quoting service."""
    kind.kubectl("delete", "hpa", EC_NAME, "-n", NAMESPACE, "--ignore-not-found")
    kind.kubectl("scale", "ec", EC_NAME, "-n", NAMESPACE, "--replicas=2")
    before = eventually(lambda: _replicas_ready(kind, 2), 300, "2 attested, Ready replicas")
    uids = {p["metadata"]["uid"]: p["metadata"]["name"] for p in before}
    restarts = {
        p["metadata"]["uid"]: [c["restartCount"] for c in p["status"]["containerStatuses"]]
        for p in before
    }
    node_pods = _node_pods(kind)
    epc = _epc(kind)
    upgrade = subprocess.Popen(
        [str(binary_path("helm")), f"--kubeconfig={kind.cluster.paths.kubeconfig}",
         "upgrade", RELEASE, str(repo_path("charts", "kubetee")), "-n", RELEASE_NAMESPACE,
         "--reuse-values", f"--set-string=devicePlugin.podAnnotations.rollout={time.time()}",
         "--wait", "--timeout=5m"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lapses: list[str] = []
    samples = 0
    deadline = time.monotonic() + 400
    # Sample the replicas for the whole rollout: every one must stay Running, Ready and
    # attested at every look.
    while upgrade.poll() is None or set(_node_pods(kind).values()) & set(node_pods.values()):
        assert time.monotonic() < deadline, "the node DaemonSet did not roll within 400 s"
        replicas = {
            p["metadata"]["uid"]: p for p in _pods(kind, NAMESPACE, f"{EC_LABEL}={EC_NAME}")
        }
        samples += 1
        for uid, name in uids.items():
            pod = replicas.get(uid)
            if pod is None:
                lapses.append(f"{name} gone")
                continue
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
            for condition in ("Ready", "kubetee.io/attested"):
                if conditions.get(condition) != "True":
                    lapses.append(f"{name} {condition}={conditions.get(condition)}")
        time.sleep(1)
    _, errors = upgrade.communicate()
    assert upgrade.returncode == 0, errors
    assert samples >= 3, "the rollout was not observed"
    assert lapses == []
    assert set(_node_pods(kind)) == set(node_pods)  # a new node pod on every SGX node
    after = {p["metadata"]["uid"]: p for p in _pods(kind, NAMESPACE, f"{EC_LABEL}={EC_NAME}")}
    assert set(after) == set(uids)
    for uid, pod in after.items():
        assert [c["restartCount"] for c in pod["status"]["containerStatuses"]] == restarts[uid]
    # The new device plugins registered with the kubelets: the same EPC is advertised.
    eventually(lambda: _epc(kind) == epc, 120, f"the nodes to advertise {epc} again")
    # Quotes come from the new quoting services (new platforms, registered with the PCS).
    kind.kubectl("scale", "ec", EC_NAME, "-n", NAMESPACE, "--replicas=3")
    eventually(
        lambda: _replicas_ready(kind, 3),
        300,
        "a third replica attested after the rollout",
        lambda: story_state(kind),
    )


def test_helm_upgrade_to_a_new_image_tag_keeps_the_workload_attested(
    demo: KindDemo, kind: Kind
) -> None:
    repository = IMAGE.rpartition(":")[0]
    upgraded = f"{repository}:{UPGRADE_TAG}"
    subprocess.run(["docker", "tag", IMAGE, upgraded], check=True, timeout=60)
    KindClusterAccess(kind.cluster).load_image(upgraded)
    kind.kubectl("delete", "hpa", EC_NAME, "-n", NAMESPACE, "--ignore-not-found")
    kind.kubectl("scale", "ec", EC_NAME, "-n", NAMESPACE, "--replicas=2")
    subprocess.run(
        [str(binary_path("helm")), f"--kubeconfig={kind.cluster.paths.kubeconfig}",
         "upgrade", RELEASE, str(repo_path("charts", "kubetee")), "-n", RELEASE_NAMESPACE,
         "--reuse-values", f"--set=image.tag={UPGRADE_TAG}", "--wait", "--timeout=5m"],
        check=True, capture_output=True, text=True, timeout=400,
    )  # fmt: skip

    def rolled() -> bool:
        for pod in _pods(kind, RELEASE_NAMESPACE):
            if pod["metadata"].get("annotations", {}).get("helm.sh/hook"):
                continue
            images = [c["image"] for c in pod["spec"]["containers"]]
            if any(i.startswith(repository) and i != upgraded for i in images):
                return False
        return True

    eventually(
        rolled, 300, "every release pod to run the upgraded image", lambda: story_state(kind)
    )

    def attested_on_the_new_image() -> bool:
        status = _ec(kind, EC_NAME).get("status") or {}
        replicas = _live_replicas(kind)
        runtimes = [
            c["image"]
            for p in replicas
            for c in p["spec"]["containers"]
            if c["name"] == ENCLAVE_CONTAINER
        ]
        ready = [p for p in replicas if _ready(p)]
        return (
            status.get("attestedReplicas") == 2
            and len(replicas) == len(ready) == 2
            and bool(runtimes)
            and all(image == upgraded for image in runtimes)
        )

    eventually(
        attested_on_the_new_image,
        300,
        "the replicas to re-attest on the new runtime",
        lambda: story_state(kind),
    )
    secret = kind.json("get", "secret", "demo-db", "-n", NAMESPACE)
    expected = hashlib.sha256(base64.b64decode(secret["data"]["password"])).hexdigest()
    for pod in _live_replicas(kind):
        assert demo.served_hash(pod["metadata"]["name"]) == expected


def test_publish_tcb_works_in_the_charts_pcs(demo: KindDemo, kind: Kind) -> None:
    """The chart keeps the authority in a read-only Secret: ``kubetee pcs publish-tcb``,
    run in the PCS pod with no path, changes the PCS's writable copy, and the PCS serves
    the newer evaluation at once."""
    pcs = kind.kubectl(
        "get", "deploy", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/component=pcs",
        "-o", "name",
    ).strip()  # fmt: skip
    labels = [n["metadata"]["labels"] for n in kind.json("get", "nodes")["items"]]
    fmspc = next(found[FMSPC_LABEL] for found in labels if FMSPC_LABEL in found)
    fetch = (
        "import json, ssl, urllib.request; "
        "context = ssl.create_default_context(cafile='/etc/kubetee/tls/ca.crt'); "
        "context.check_hostname = False; "
        f"url = 'https://127.0.0.1:8081{TCB_PATH}?fmspc={fmspc}'; "
        "body = json.load(urllib.request.urlopen(url, context=context, timeout=10)); "
        "print(body['tcbInfo']['tcbEvaluationDataNumber'])"
    )

    def served_evaluation() -> int:
        return int(kind.kubectl("exec", "-n", RELEASE_NAMESPACE, pcs, "--", "python3", "-c", fetch))

    before = served_evaluation()
    published = json.loads(
        kind.kubectl(
            "exec", "-n", RELEASE_NAMESPACE, pcs, "--",
            "kubetee", "pcs", "publish-tcb", f"--fmspc={fmspc}", "--advisory=INTEL-SA-09999",
        )
    )  # fmt: skip
    assert published["tcbEvaluationDataNumber"] == before + 1
    assert served_evaluation() == before + 1


def test_helm_uninstall_leaves_no_nonce_lease(demo: KindDemo, kind: Kind) -> None:
    nonce_leases = ("get", "leases", "-n", RELEASE_NAMESPACE, "-l", "kubetee.io/kbs-nonce=true")
    # The chart's replica-bound nonces (--replay-ledger=replica) write no Lease at all; a
    # Lease left by an older release's ledger is owned by its ConfigMap and goes with it.
    for lease in kind.json(*nonce_leases)["items"]:
        (owner,) = lease["metadata"]["ownerReferences"]
        assert owner["kind"] == "ConfigMap"
    kind.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s")
    subprocess.run(
        [str(binary_path("helm")), f"--kubeconfig={kind.cluster.paths.kubeconfig}",
         "uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", "--timeout=3m"],
        check=True, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    eventually(
        lambda: not kind.json(*nonce_leases)["items"], 120, "the garbage collector to take them"
    )
    eventually(
        lambda: not kind.json("get", "pods", "-n", RELEASE_NAMESPACE)["items"],
        180,
        "the release's pods to go",
    )
    left = kind.json("get", "all,configmaps,leases,secrets", "-n", RELEASE_NAMESPACE)["items"]
    names = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in left)
    # What helm did not make stays: the authority Secret and its root certificate (step 3
    # of docs/kind.md), the PCS's platform registry (the nodes keep their platforms) and
    # kube-root-ca.crt.
    assert names == [
        "ConfigMap/kube-root-ca.crt",
        "ConfigMap/kubetee-sgx-platforms",
        "ConfigMap/kubetee-sgx-root-ca",
        "Secret/kubetee-sgx-authority",
    ], names
