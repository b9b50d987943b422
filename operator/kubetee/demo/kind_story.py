"""The demo on kind: the same story as ``kubetee demo``, every component a real pod.

The image is built here and loaded into the nodes; ``helm install`` runs the operator,
the attestation service, the node DaemonSet (device plugin registered with the real
kubelet, quoting service), the simulated PCS, the second scheduler and the metrics API
server as pods. The PCS holds the SGX authority made here (``kubetee pcs init``); the
nodes register their own platforms with it. The example EnclaveContainer's replicas run
the example enclave bundle in their ``kubetee-enclave`` containers (containerd);
``kubectl exec`` into that container fetches the hash of the secret the workload
received, which no other container gets; a tampered workload (one byte changed,
re-signed by an attacker) is refused; ``helm test`` passes; and the HPA scales on the EPC
the replicas' enclave containers really use (memory allocated there, measured from their
cgroups).

The cluster itself comes from a :class:`KindAccess` (``kubetee kind``), so this story
needs nothing but a kubeconfig, a way to load an image and the image's name.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml
from kubernetes.client.exceptions import ApiException

from enclave_runtime.quoting.provision import ensure_authority
from kubetee.cluster.layout import repo_root
from kubetee.cluster.toolchain import binary_path
from kubetee.controller.enclave_container import ENCLAVE_CONTAINER, PRIVATE_VOLUME
from kubetee.demo.errors import DemoError
from kubetee.demo.kube import Kube, wait_for
from kubetee.demo.tampered import tampered_bundle

RELEASE = "kubetee"
RELEASE_NAMESPACE = "kubetee-system"
NAMESPACE = "kubetee-demo"
EC_NAME = "demo"
TAMPERED = "demo-tampered"
EC_LABEL = "kubetee.io/enclave-container"
CLAIMS_ANNOTATION = "kubetee.io/attested-claims"
AUTHORITY_SECRET = "kubetee-sgx-authority"  # noqa: S105 - a Secret's name
ROOT_CA_CONFIGMAP = "kubetee-sgx-root-ca"
# Where docs/kind.md step 3 keeps the authority's keys: outside the working tree.
AUTHORITY_DIR = Path.home() / ".local" / "state" / "kubetee" / "sgx-authority"
# The example workload's answer, fetched inside its enclave container (where it serves).
WORKLOAD_URL = "http://127.0.0.1:8080/"
FETCH = f"import urllib.request as u; print(u.urlopen('{WORKLOAD_URL}', timeout=5).read().decode())"
# Memory a replica's workload takes to look busy: 56 of its 64 MiB of EPC (87%).
HOG_MIB = 56
# The chart's components (values keys) whose pods run the KubeTEE image (the second
# scheduler runs kube-scheduler's own).
CHART_COMPONENTS = (
    "pcs",
    "operator",
    "attestationService",
    "devicePlugin",
    "metricsAPIServer",
)
STEPS = 8


class KindAccess(Protocol):
    """What the story needs of a kind cluster."""

    def up(self) -> Path:
        """Create or reuse the cluster; its kubeconfig."""
        ...

    def load_image(self, image: str) -> None:
        """Make a locally built image available on every node."""
        ...

    def image_id(self, image: str) -> str:
        """The local image's ID (``sha256:...``): what a rebuilt image under the same tag
        changes."""
        ...


@dataclass
class Findings:
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


def example_manifests() -> tuple[dict[str, Any], dict[str, Any]]:
    """The example Secret and EnclaveContainer (deploy/examples), as they are: the
    workload runs in the enclave bundle, on the KubeTEE image the nodes already have."""
    documents = [
        d
        for d in yaml.safe_load_all(
            (repo_root() / "deploy" / "examples" / "enclavecontainer.yaml").read_text()
        )
        if d
    ]
    secret = next(d for d in documents if d["kind"] == "Secret")
    ec = copy.deepcopy(next(d for d in documents if d["kind"] == "EnclaveContainer"))
    return secret, ec


class KindDemo:
    def __init__(
        self,
        kind: KindAccess,
        image: str,
        build_image: Callable[[str], None],
        out: TextIO = sys.stdout,
    ) -> None:
        self.kind = kind
        self.image = image
        self.build_image = build_image
        self.out = out
        self.findings = Findings()
        self.started = time.monotonic()
        self._step = 0
        self.kube: Kube

    # -- output --------------------------------------------------------------------------

    def step(self, title: str) -> None:
        self._step += 1
        elapsed = time.monotonic() - self.started
        self.out.write(f"\n[{self._step}/{STEPS}] {title}  ({elapsed:.0f}s)\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(f"    {text}\n")
        self.out.flush()

    # -- the story -----------------------------------------------------------------------

    def run(self) -> None:
        self.cluster_up()
        self.image_loaded()
        self.install_chart()
        self.helm_test()
        self.deploy_workload()
        self.tampered_workload()
        self.autoscale()
        self.summary()

    def cluster_up(self) -> None:
        self.step("kind cluster: real kubelets, containerd, runc")
        self.kube = Kube(self.kind.up())
        for node in self._items("nodes"):
            info = node["status"]["nodeInfo"]
            labels = node["metadata"].get("labels") or {}
            role = "SGX worker" if labels.get("kubetee.io/sgx") == "true" else "control plane"
            self.say(
                f"{node['metadata']['name']}: {role}, kubelet {info['kubeletVersion']}, "
                f"{info['containerRuntimeVersion']}"
            )

    def image_loaded(self) -> None:
        self.step(f"Image {self.image}: built locally, loaded into every node")
        self.build_image(self.image)
        self.kind.load_image(self.image)
        self.say("no image registry involved: the nodes run what was built here")

    def install_chart(self) -> None:
        self.step("helm install charts/kubetee: every component a pod")
        self._authority()
        repository, _, tag = self.image.rpartition(":")
        # A rebuilt image keeps its tag: the image ID in every pod template makes a reused
        # release roll its pods onto it, instead of keeping the old code running.
        image_id = self.kind.image_id(self.image).removeprefix("sha256:")[:16]
        rolled = [
            f"--set-string={component}.podAnnotations.kubetee\\.io/image-id={image_id}"
            for component in CHART_COMPONENTS
        ]
        self.kube.helm(
            "upgrade", "--install", RELEASE, str(repo_root() / "charts" / "kubetee"),
            f"--namespace={RELEASE_NAMESPACE}",
            f"--values={repo_root() / 'deploy' / 'kind' / 'values.yaml'}",
            f"--set=image.repository={repository}", f"--set=image.tag={tag}",
            *rolled, "--wait", "--timeout=5m",
        )  # fmt: skip
        for pod in self._items("pods", f"--namespace={RELEASE_NAMESPACE}"):
            if pod["status"].get("phase") != "Running":
                continue
            statuses = pod["status"].get("containerStatuses") or []
            ids = {s["containerID"].split("://")[0] for s in statuses if s.get("containerID")}
            self.say(
                f"{pod['metadata']['name']} on {pod['spec'].get('nodeName')}: "
                f"{len(statuses)} container(s), {'/'.join(sorted(ids))}://"
            )
        capacity = wait_for(self._sgx_capacity, 120, "the kubelets to report kubetee.io/epc")
        for line in capacity:
            self.say(line)
        self.findings.add(
            "helm install: operator, attestation service, simulated PCS, node DaemonSet, "
            "scheduler, metrics API server running as pods in containerd containers"
        )
        self.findings.add(f"EPC capacity from the real kubelets: {'; '.join(capacity)}")

    def helm_test(self) -> None:
        self.step("helm test")
        output = self.kube.helm("test", RELEASE, f"--namespace={RELEASE_NAMESPACE}")
        phases = [ln.split()[-1] for ln in output.splitlines() if ln.strip().startswith("Phase:")]
        if not phases or set(phases) != {"Succeeded"}:
            raise DemoError(f"helm test did not succeed: {output.strip()[-400:]}")
        self.say(f"{len(phases)} test(s) succeeded")
        self.findings.add("helm test passed (the kubetee.io API served, KBS over TLS answers)")

    def deploy_workload(self) -> None:
        self.step("EnclaveContainer: 3 replicas x 64Mi of EPC, attested before the secret")
        self._reset_namespace()
        examples = repo_root() / "deploy" / "examples"
        self.kube.kubectl("apply", "--server-side", f"-f={examples / 'epcpool.yaml'}")
        self.kube.kubectl(
            "apply", "--server-side", f"--namespace={NAMESPACE}",
            f"-f={examples / 'enclave-bundle.yaml'}", f"-f={examples / 'enclavecontainer.yaml'}",
        )  # fmt: skip
        self.say("the workload: deploy/examples/enclave-app, signed into an enclave and shipped")
        self.say(f"as the ConfigMap demo-enclave; it runs in each replica's {ENCLAVE_CONTAINER}")
        status = wait_for(lambda: self._attested(EC_NAME, 3), 300, "3 attested, Ready replicas")
        self.say(
            f"status: replicas={status.get('replicas')} ready={status.get('readyReplicas')} "
            f"attested={status.get('attestedReplicas')}"
        )
        expected = self._secret_hash()
        matched = 0
        for pod in self._pods(EC_NAME):
            name = pod.metadata.name
            seen = wait_for(partial(self.served_hash, name), 60, f"{name}'s workload to serve")
            container_id = _container_id(pod, ENCLAVE_CONTAINER)
            self.say(f"{name} on {pod.spec.node_name} ({container_id[:24]}...): sha256 {seen[:16]}")
            matched += seen == expected
            others = private_volume_holders(pod) - {ENCLAVE_CONTAINER}
            if others or pod.spec.share_process_namespace:
                raise DemoError(f"{name}: other containers reach the enclave's secrets: {others}")
        if matched != 3:
            raise DemoError(f"the secret's hash matched in {matched} of 3 replicas")
        self.say(f"the Secret's sha256 {expected[:16]}... (its value is never printed)")
        self.say(f"only {ENCLAVE_CONTAINER} mounts the enclave's private volume; no shared PIDs")
        self.findings.add(
            "3/3 replicas attested in containerd containers; kubectl exec: the workload inside "
            "each enclave serves the sha256 of the secret it received, equal to the Secret's"
        )

    def tampered_workload(self) -> None:
        self.step("A tampered workload is refused")
        genuine = self._genuine_mrenclave()
        self.say(f"the policy pins the genuine MRENCLAVE {genuine[:16]}...")
        configmap, tampered_mrenclave = tampered_bundle(f"{TAMPERED}-enclave")
        self.say("an attacker changes one byte of the program and signs it with their own key:")
        self.say(f"MRENCLAVE {tampered_mrenclave[:16]}...")
        _, tampered = example_manifests()
        tampered["metadata"] = {"name": TAMPERED}
        tampered["spec"]["replicas"] = 1
        tampered["spec"]["enclave"]["bundle"]["name"] = configmap["metadata"]["name"]
        self._apply(configmap, tampered)
        self.say(f"applied {TAMPERED}: the same policy, the attacker's enclave")
        event = wait_for(
            lambda: self._event(TAMPERED, "MeasurementMismatch"),
            240,
            "the attestation service to refuse the tampered enclave",
        )
        self.say(f"Event {event}")
        for pod in self._pods(TAMPERED):
            if "starting the workload" in self._enclave_log(pod.metadata.name):
                raise DemoError("the tampered workload was started")
            if self.served_hash(pod.metadata.name) is not None:
                raise DemoError("the tampered workload serves")
        self.say("the tampered workload never started: no secret reached it")
        self.kube.kubectl("delete", "ec", TAMPERED, f"--namespace={NAMESPACE}", "--wait=true")
        # Its Deployment's pods go after it (garbage collection, in the background).
        wait_for(
            lambda: not self.kube.pods(NAMESPACE, f"{EC_LABEL}={TAMPERED}"),
            120,
            f"the pods of {TAMPERED} to be deleted",
        )
        self.say("deleted, to give its EPC back to the pool")
        self.findings.add("the tampered workload was refused (MeasurementMismatch), no secret")

    def autoscale(self) -> None:
        self.step("HPA on EPC utilization, measured from the replicas' containers")
        self.kube.kubectl(
            "apply", "--server-side", f"--namespace={NAMESPACE}",
            "-f", str(repo_root() / "deploy" / "examples" / "hpa.yaml"),
        )  # fmt: skip
        hogs = [self._hog(pod.metadata.name) for pod in self._pods(EC_NAME)]
        try:
            self.say(f"each replica's enclave container allocates {HOG_MIB} of its 64 MiB")
            scaled_up = wait_for(lambda: self._replicas_at_least(5), 240, "the HPA to scale up")
            self.say(f"HPA scaled demo to {scaled_up} replicas; {self._hpa_line()}")
        finally:
            for hog in hogs:
                _stop(hog)
        self.say("the allocations are freed")
        scaled_down = wait_for(
            lambda: self._replicas_at_most(2), 240, "the HPA to scale down (30 s stabilization)"
        )
        self.say(f"HPA scaled demo down to {scaled_down} replicas; {self._hpa_line()}")
        self.findings.add(f"HPA scaled 3 -> {scaled_up} -> {scaled_down} replicas on EPC in use")

    def summary(self) -> None:
        elapsed = time.monotonic() - self.started
        self.out.write(f"\nKubeTEE on kind finished in {elapsed:.0f}s. What happened:\n")
        for line in self.findings.lines:
            self.out.write(f"  - {line}\n")
        self.out.write(
            "\nWhere to look:\n"
            f"  export KUBECONFIG={self.kube.kubeconfig}\n"
            f"  kubectl get pods -A -o wide\n"
            f"  kubectl get ec,epcp,pods,hpa -n {NAMESPACE}\n"
            f"  kubectl exec -n {NAMESPACE} deploy/{EC_NAME} -c {ENCLAVE_CONTAINER} -- "
            f'python3 -c "{FETCH}"\n'
            f"  kubectl get events -n {NAMESPACE} --field-selector reason=MeasurementMismatch\n"
            "  kubetee kind down                     # delete the cluster\n"
        )

    # -- helpers -------------------------------------------------------------------------

    def _authority(self) -> None:
        """The simulated SGX authority as docs/kind.md step 3 makes it: its keys (made here
        by ``kubetee pcs init``, outside the working tree) as the Secret the chart's PCS
        mounts, its root certificate as the ConfigMap the attestation service trusts.

        A Secret already in the cluster is kept (the nodes' platforms are registered with
        that PCS); the root certificate always comes from it.
        """
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": RELEASE_NAMESPACE},
        }
        self.kube.kubectl("apply", "--server-side", "-f=-", input_text=yaml.safe_dump(namespace))
        try:
            secret = self.kube.core.read_namespaced_secret(AUTHORITY_SECRET, RELEASE_NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            secret = None
        root_ca = (secret.data or {}).get("root_ca.pem") if secret is not None else None
        if root_ca is None:
            ensure_authority(AUTHORITY_DIR)
            manifest = self.kube.kubectl(
                "create", "secret", "generic", AUTHORITY_SECRET,
                f"--namespace={RELEASE_NAMESPACE}", f"--from-file={AUTHORITY_DIR}",
                "--dry-run=client", "-o=yaml",
            )  # fmt: skip
            self.kube.kubectl(
                "apply", "--server-side", "--force-conflicts", "-f=-", input_text=manifest
            )
            root_ca = base64.b64encode((AUTHORITY_DIR / "root_ca.pem").read_bytes()).decode()
            self.say(f"simulated SGX authority (kubetee pcs init --dir {AUTHORITY_DIR})")
            self.say(f"its keys: Secret {AUTHORITY_SECRET}, mounted by the PCS alone")
        else:
            self.say(f"Secret {AUTHORITY_SECRET} exists: the PCS keeps its authority")
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": RELEASE_NAMESPACE},
            "data": {"root-ca.pem": base64.b64decode(root_ca).decode()},
        }
        self.kube.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f=-",
            input_text=yaml.safe_dump(configmap),
        )  # fmt: skip
        self.say(
            f"its root certificate: ConfigMap {ROOT_CA_CONFIGMAP}, for the attestation service"
        )

    def _sgx_capacity(self) -> list[str] | None:
        lines = []
        for node in self._items("nodes", "--selector=kubetee.io/sgx=true"):
            # Allocatable, not capacity: a kubelet keeps the capacity a device plugin of an
            # uninstalled release advertised, and zeroes what is allocatable until the new
            # plugin registers.
            allocatable = node["status"].get("allocatable") or {}
            epc = allocatable.get("kubetee.io/epc")
            enclaves = allocatable.get("kubetee.io/enclave")
            if not epc or epc == "0" or not enclaves or enclaves == "0":
                return None
            lines.append(
                f"{node['metadata']['name']}: kubetee.io/epc={epc} MiB, "
                f"kubetee.io/enclave={enclaves}"
            )
        return lines or None

    def _items(self, *args: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.kube.kubectl("get", *args, "-o=json"))[
            "items"
        ]
        return items

    def _reset_namespace(self) -> None:
        if self.kube.recreate_namespace(NAMESPACE, 180):
            self.say(f"removed the previous run's namespace {NAMESPACE}")

    def _apply(self, *manifests: dict[str, Any]) -> None:
        self.kube.kubectl(
            "apply", "--server-side", f"--namespace={NAMESPACE}", "-f=-",
            input_text=yaml.safe_dump_all(manifests),
        )  # fmt: skip

    def _pods(self, ec: str) -> list[Any]:
        return [
            p
            for p in self.kube.pods(NAMESPACE, f"{EC_LABEL}={ec}")
            if p.status is not None and p.status.phase == "Running"
        ]

    def _attested(self, name: str, count: int) -> dict[str, Any] | None:
        status: dict[str, Any] = self.kube.enclave_container(NAMESPACE, name).get("status") or {}
        ready = [p for p in self._pods(name) if _ready(p)]
        done = status.get("attestedReplicas", 0) >= count and len(ready) >= count
        return status if done else None

    def _secret_hash(self) -> str:
        secret = self.kube.core.read_namespaced_secret("demo-db", NAMESPACE)
        return hashlib.sha256(base64.b64decode((secret.data or {})["password"])).hexdigest()

    def _enclave_log(self, pod: str) -> str:
        """What the pod's enclave container printed (empty if it has not run yet)."""
        try:
            return self.kube.kubectl(
                "logs", f"--namespace={NAMESPACE}", pod, "-c", ENCLAVE_CONTAINER
            )
        except DemoError:
            return ""

    def served_hash(self, pod: str) -> str | None:
        """The secret's sha256 as the pod's workload serves it, asked inside its enclave
        container; None while (or if ever) it does not serve."""
        try:
            answer = self.kube.kubectl(
                "exec", f"--namespace={NAMESPACE}", pod, "-c", ENCLAVE_CONTAINER,
                "--", "python3", "-c", FETCH,
            )  # fmt: skip
        except DemoError:
            return None
        digest = json.loads(answer).get("secretSha256")
        return str(digest) if digest else None

    def _genuine_mrenclave(self) -> str:
        for pod in self._pods(EC_NAME):
            claims = (pod.metadata.annotations or {}).get(CLAIMS_ANNOTATION)
            if claims:
                return str(json.loads(claims)["mrenclave"])
        raise DemoError("no attested replica carries its attested claims")

    def _event(self, involved: str, reason: str) -> str | None:
        events = self.kube.core.list_namespaced_event(
            NAMESPACE, field_selector=f"involvedObject.name={involved},reason={reason}"
        ).items
        if not events:
            return None
        return f"{events[0].reason}: {(events[0].message or '')[:160]}"

    def _hog(self, pod: str) -> subprocess.Popen[bytes]:
        """Memory held in the pod's enclave container until this process's stdin closes."""
        program = f"import sys; b = b'1' * ({HOG_MIB} << 20); sys.stdin.read()"
        return subprocess.Popen(
            [
                str(binary_path("kubectl")), f"--kubeconfig={self.kube.kubeconfig}",
                "exec", "-i", f"--namespace={NAMESPACE}", pod, "-c", ENCLAVE_CONTAINER,
                "--", "python3", "-c", program,
            ],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _replicas(self) -> int:
        return int(self.kube.enclave_container(NAMESPACE, EC_NAME)["spec"]["replicas"])

    def _replicas_at_least(self, count: int) -> int | None:
        replicas = self._replicas()
        return replicas if replicas >= count else None

    def _replicas_at_most(self, count: int) -> int | None:
        replicas = self._replicas()
        return replicas if replicas <= count else None

    def _hpa_line(self) -> str:
        return self.kube.kubectl(
            "get", "hpa", EC_NAME, f"--namespace={NAMESPACE}", "--no-headers"
        ).strip()


def private_volume_holders(pod: Any) -> set[str]:
    """The containers of ``pod`` that mount the enclave's private volume."""
    return {
        c.name
        for c in [*(pod.spec.containers or []), *(pod.spec.init_containers or [])]
        for m in c.volume_mounts or []
        if m.name == PRIVATE_VOLUME
    }


def _ready(pod: Any) -> bool:
    """Attested (its readiness gate) and its enclave container ready: the pod serves."""
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _container_id(pod: Any, container: str) -> str:
    for status in pod.status.container_statuses or []:
        if status.name == container and status.container_id:
            return str(status.container_id)
    return "?"


def _stop(hog: subprocess.Popen[bytes]) -> None:
    """Close the hog's stdin: the remote process reads EOF, exits, and frees its memory."""
    if hog.stdin is not None:
        hog.stdin.close()
    try:
        hog.wait(timeout=30)
    except subprocess.TimeoutExpired:
        hog.kill()
        hog.wait()
