"""The demo, step by step: cluster, chart, workload, attestation, tampering, autoscaling.

Every step prints what it does and what it saw; a failed step raises ``DemoError`` with
what to look at. The cluster and everything the demo started keep running afterwards,
so the summary's commands can be tried; ``kubetee cluster down`` stops it all.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO

import yaml
from kubernetes.client.exceptions import ApiException

from kubetee.cluster import pcs
from kubetee.cluster.cluster import LocalCluster
from kubetee.cluster.layout import ClusterLayout, repo_root
from kubetee.cluster.node_services import plugin_dir
from kubetee.demo import services
from kubetee.demo.errors import DemoError
from kubetee.demo.kube import Kube, wait_for
from kubetee.demo.tampered import tampered_bundle
from kubetee.metrics import local as local_metrics
from kubetee.nodeagent.pod_runtimes import pod_directory
from kubetee.tcb.names import FMSPC_LABEL, TCB_EVALUATION_LABEL, TCB_STATUS_LABEL

NAMESPACE = "kubetee-demo"
EC_NAME = "demo"
TAMPERED = "demo-tampered"
EC_LABEL = "kubetee.io/enclave-container"
USAGE_ANNOTATION = "kubetee.io/simulated-epc-usage"
CLAIMS_ANNOTATION = "kubetee.io/attested-claims"
ENCLAVE_LOG = "kubetee-enclave.log"  # the enclave container's output (runtime and workload)
SERVING = re.compile(r"serving with its secret on (http://\S+)")
STEPS = 7


@dataclass
class Findings:
    """What the demo saw, for the summary."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


class Demo:
    def __init__(self, layout: ClusterLayout, nodes: int, out: TextIO = sys.stdout) -> None:
        self.layout = layout
        self.nodes = nodes
        self.out = out
        self.findings = Findings()
        self.started = time.monotonic()
        self._step = 0
        self.kube: Kube
        self.local: services.LocalServices

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
        self.install_chart()
        self.start_services()
        self.deploy_workload()
        self.attest()
        self.tampered_workload()
        self.autoscale()
        self.summary()

    def cluster_up(self) -> None:
        self.step("Local Kubernetes cluster: real control plane, KWOK nodes with simulated EPC")
        LocalCluster(self.layout, out=self.out).up(self.nodes, epc_mib=128)
        self.kube = Kube(self.layout.kubeconfig)
        for node in self.kube.core.list_node(label_selector="kubetee.io/sgx=true").items:
            capacity = (node.status.capacity if node.status else None) or {}
            self.say(
                f"{node.metadata.name if node.metadata else '?'}: "
                f"kubetee.io/epc={capacity.get('kubetee.io/epc')} MiB, "
                f"kubetee.io/enclave={capacity.get('kubetee.io/enclave')} "
                "(advertised by its device plugin over the kubelet gRPC API)"
            )

    def install_chart(self) -> None:
        self.step("helm upgrade --install the KubeTEE chart")
        chart = repo_root() / "charts" / "kubetee"
        values = repo_root() / "deploy" / "cluster" / "demo-values.yaml"
        self._root_ca_config_map()
        self.kube.helm(
            "upgrade", "--install", "kubetee", str(chart),
            f"--namespace={services.RELEASE_NAMESPACE}", "--create-namespace",
            f"--values={values}", "--wait", "--timeout=3m",
            f"--set=attestationService.trust.pccsURL={pcs.url(self.layout)}",
        )  # fmt: skip
        status = self.kube.helm("status", "kubetee", f"--namespace={services.RELEASE_NAMESPACE}")
        revision = next((ln for ln in status.splitlines() if ln.startswith("REVISION")), "")
        crds = self.kube.kubectl("get", "crd", "-o", "name").split()
        self.say(f"release kubetee in {services.RELEASE_NAMESPACE}, {revision.lower()}")
        self.say(f"CRDs served: {', '.join(c.split('/')[1] for c in crds if 'kubetee' in c)}")
        self.findings.add(f"chart installed with {values.relative_to(repo_root())}")

    def start_services(self) -> None:
        self.step("Operator, attestation service (2 replicas), custom metrics API")
        self.say("KWOK runs no containers: these run as local processes, each authenticated")
        self.say("as the ServiceAccount the chart created, so the chart's RBAC is what applies")
        self.local = services.start(self.kube, self.layout)
        for url in self.local.attestation_urls:
            self.say(f"attestation service replica at {url}")
        metrics = local_metrics.start(self.layout, out=self.out)
        self.say(f"custom.metrics.k8s.io/v1beta2 served at {metrics.address}:{metrics.port}")
        judged = wait_for(self._tcb_judged_nodes, 90, "the operator to label each node's TCB")
        for node, labels in judged:
            self.say(
                f"{node}: SGX TCB {labels[TCB_STATUS_LABEL]} under evaluation "
                f"{labels[TCB_EVALUATION_LABEL]} (FMSPC {labels.get(FMSPC_LABEL, '?')}), "
                "judged by the operator from the PCS's TCB Info"
            )
        self.findings.add(f"{len(judged)} nodes labelled with their SGX TCB status")

    def deploy_workload(self) -> None:
        self.step("EPCPool + EnclaveContainer: 3 replicas x 64Mi, scheduled by EPC")
        self._reset_namespace()
        examples = repo_root() / "deploy" / "examples"
        self.kube.kubectl("apply", "--server-side", f"-f={examples / 'epcpool.yaml'}")
        self.kube.kubectl(
            "apply", "--server-side", f"--namespace={NAMESPACE}",
            f"-f={examples / 'enclave-bundle.yaml'}", f"-f={examples / 'enclavecontainer.yaml'}",
        )  # fmt: skip
        self.say("the workload: deploy/examples/enclave-app, a Python service signed into an")
        self.say("enclave (kubetee enclave build), shipped as the ConfigMap demo-enclave")
        pods = wait_for(
            lambda: self._bound_pods(EC_NAME, 3), 120, "3 replicas bound to nodes by EPC"
        )
        for pod in pods:
            self.say(f"{pod.metadata.name} -> {pod.spec.node_name}")
        pool = wait_for(lambda: self._pool_allocated(192), 60, "the EPCPool to account 192 MiB")
        self.say(f"EPCPool sgx: {pool}")
        self.findings.add(f"3 replicas scheduled by the real kube-scheduler on EPC ({pool})")

    def attest(self) -> None:
        self.step("Attestation before secrets: the measured workload gets its secret")
        self.say("each replica's enclave runtime checks the SIGSTRUCT and trusted files (as")
        self.say("EINIT does), gets a DCAP quote from its node's quoting service, attests, and")
        self.say("only then starts the workload with the secret in its private directory")
        status = wait_for(lambda: self._ec_status(EC_NAME, attested=3), 180, "3 attested replicas")
        self.say(
            f"status: replicas={status.get('replicas')} ready={status.get('readyReplicas')} "
            f"attested={status.get('attestedReplicas')}"
        )
        secret = self.kube.core.read_namespaced_secret("demo-db", NAMESPACE)
        expected = hashlib.sha256(base64.b64decode((secret.data or {})["password"])).hexdigest()
        served = 0
        for pod in self._bound_pods(EC_NAME, 3) or []:
            url = wait_for(partial(self._workload_url, pod), 60, "the workload to serve")
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # loopback
                document = json.loads(response.read())
            if document.get("secretSha256") == expected:
                served += 1
                self.say(f"{pod.metadata.name}: the workload at {url} serves the secret's hash")
        if served != 3:
            raise DemoError(f"the workload used the secret in {served} of 3 replicas")
        self.say(f"the secret's sha256 {expected[:16]}... (its value is never printed)")
        self.findings.add(
            "3/3 replicas attested; only then did each workload start and use the secret"
        )

    def tampered_workload(self) -> None:
        self.step("A tampered workload is refused")
        genuine = self._genuine_mrenclave()
        self.say(f"the policy pins the genuine MRENCLAVE {genuine[:16]}...")
        configmap, tampered_mrenclave = tampered_bundle(f"{TAMPERED}-enclave")
        self.say("an attacker changes one byte of the program and signs it with their own key:")
        self.say(f"MRENCLAVE {tampered_mrenclave[:16]}...")
        ec = yaml.safe_load_all(
            (repo_root() / "deploy" / "examples" / "enclavecontainer.yaml").read_text()
        )
        manifest = next(d for d in ec if d and d.get("kind") == "EnclaveContainer")
        tampered = copy.deepcopy(manifest)
        tampered["metadata"] = {"name": TAMPERED}
        tampered["spec"]["replicas"] = 1
        tampered["spec"]["enclave"]["bundle"]["name"] = configmap["metadata"]["name"]
        self.kube.kubectl(
            "apply", "--server-side", f"--namespace={NAMESPACE}", "-f=-",
            input_text=yaml.safe_dump(configmap) + "---\n" + yaml.safe_dump(tampered),
        )  # fmt: skip
        self.say("applied demo-tampered: the same policy, the attacker's enclave")
        event = wait_for(
            lambda: self._event(TAMPERED, "MeasurementMismatch"),
            180,
            "the attestation service to refuse the tampered enclave",
        )
        self.say(f"Event {event['reason']}: {event['message'][:160]}")
        status = self._ec_status(TAMPERED) or {}
        self.say(f"status: attested={status.get('attestedReplicas', 0)}")
        for pod in self._bound_pods(TAMPERED, 1) or []:
            if "starting the workload" in self._enclave_log(pod):
                raise DemoError("the tampered workload was started")
        self.say("the tampered workload never started: no secret reached it")
        self.findings.add("the tampered workload was refused (MeasurementMismatch), no secret")

    def autoscale(self) -> None:
        self.step("HPA on EPC utilization (custom metrics API, real controller-manager)")
        self.kube.kubectl(
            "apply", "--server-side", f"--namespace={NAMESPACE}",
            f"-f={repo_root() / 'deploy' / 'examples' / 'hpa.yaml'}",
        )  # fmt: skip
        self._set_usage("90%")
        self.say("replicas report 90% of their EPC in use (target: 50%)")
        scaled_up = wait_for(
            lambda: self._scaled(lambda n: n >= 5, "90%"), 180, "the HPA to scale up"
        )
        self.say(f"HPA scaled demo to {scaled_up} replicas; {self._hpa_line()}")
        self._set_usage("10%")
        self.say("usage falls to 10%")
        scaled_down = wait_for(
            lambda: self._scaled(lambda n: n <= 2, "10%"), 240, "the HPA to scale down"
        )
        self.say(f"HPA scaled demo down to {scaled_down} replicas; {self._hpa_line()}")
        expected = (scaled_down + 1) * 64  # the demo's replicas and the tampered one
        pool = wait_for(
            lambda: self._pool_allocated(expected), 120, f"the pool to account {expected} MiB"
        )
        self.say(f"EPCPool sgx follows: {pool}")
        self.findings.add(f"HPA scaled 3 -> {scaled_up} -> {scaled_down} replicas on EPC use")

    def summary(self) -> None:
        elapsed = time.monotonic() - self.started
        kubeconfig = self.layout.kubeconfig
        self.out.write(f"\nKubeTEE demo finished in {elapsed:.0f}s. What happened:\n")
        for line in self.findings.lines:
            self.out.write(f"  - {line}\n")
        self.out.write(
            "\nWhere to look:\n"
            f"  export KUBECONFIG={kubeconfig} PATH={self.layout.bin_dir}:$PATH\n"
            f"  kubectl get ec,epcp,pods,hpa -n {NAMESPACE}\n"
            f"  kubectl describe ec {TAMPERED} -n {NAMESPACE}     # the refusal's Event\n"
            "  kubetee enclave measure --dir deploy/examples/enclave-app   # what it pins\n"
            '  kubectl get --raw "/apis/custom.metrics.k8s.io/v1beta2/namespaces/'
            f'{NAMESPACE}/pods/*/epc_utilization"\n'
            f"  curl {self.local.operator_metrics}     # operator metrics\n"
            f"  curl {self.local.attestation_metrics[0]}     # attestation metrics\n"
            f"  kubetee cluster status                # processes and their logs\n"
            f"  kubetee cluster down                  # stop everything\n"
        )

    # -- helpers -------------------------------------------------------------------------

    def _root_ca_config_map(self) -> None:
        """The attestation service trusts the simulated root CA (chart value
        sgx.rootCAConfigMap); the authority's keys stay with the local PCS process."""
        manifest = self.kube.kubectl(
            "create", "configmap", "kubetee-sgx-root-ca",
            f"--namespace={services.RELEASE_NAMESPACE}",
            f"--from-file=root-ca.pem={pcs.root_ca(self.layout)}", "--dry-run=client", "-o=yaml",
        )  # fmt: skip
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": services.RELEASE_NAMESPACE},
        }
        self.kube.kubectl(
            "apply",
            "--server-side",
            "-f=-",
            input_text=yaml.safe_dump(namespace) + "---\n" + manifest,
        )

    def _tcb_judged_nodes(self) -> list[tuple[str, dict[str, str]]] | None:
        nodes = self.kube.core.list_node(label_selector="kubetee.io/sgx=true").items
        labelled = [
            (str(node.metadata.name), dict(node.metadata.labels or {}))
            for node in nodes
            if node.metadata is not None
        ]
        judged = [(name, labels) for name, labels in labelled if TCB_STATUS_LABEL in labels]
        return judged if nodes and len(judged) == len(nodes) else None

    def _reset_namespace(self) -> None:
        if self.kube.recreate_namespace(NAMESPACE, 120):
            self.say(f"removed the previous run's namespace {NAMESPACE}")

    def _bound_pods(self, ec: str, count: int) -> list[Any] | None:
        pods = [
            p for p in self.kube.pods(NAMESPACE, f"{EC_LABEL}={ec}")
            if p.spec is not None and p.spec.node_name
        ]  # fmt: skip
        return pods if len(pods) >= count else None

    def _pool_allocated(self, mib: int | None) -> str | None:
        pool = self.kube.epc_pool("sgx")
        status = pool.get("status") or {}
        nodes = status.get("nodes") or []
        allocated = sum(_mib(n.get("allocated")) for n in nodes)
        if mib is not None and allocated != mib:
            return None
        per_node = ", ".join(f"{n.get('name')} {_mib(n.get('allocated'))}Mi" for n in nodes)
        return f"{allocated} MiB allocated ({per_node})"

    def _ec_status(self, name: str, attested: int | None = None) -> dict[str, Any] | None:
        status: dict[str, Any] = self.kube.enclave_container(NAMESPACE, name).get("status") or {}
        if attested is not None and status.get("attestedReplicas", 0) < attested:
            return None
        return status

    def _enclave_log(self, pod: Any) -> str:
        metadata = pod.metadata
        pods_dir = plugin_dir(self.layout, pod.spec.node_name).parent / "pods"
        directory = pod_directory(pods_dir, metadata.namespace, metadata.name, metadata.uid)
        path = directory / ENCLAVE_LOG
        return path.read_text(errors="replace") if path.exists() else ""

    def _workload_url(self, pod: Any) -> str | None:
        """Where the pod's workload serves (it logs its address once it has its secret)."""
        found = SERVING.search(self._enclave_log(pod))
        return found.group(1).replace("0.0.0.0", "127.0.0.1") if found else None  # noqa: S104

    def _genuine_mrenclave(self) -> str:
        for pod in self._bound_pods(EC_NAME, 1) or []:
            claims = (pod.metadata.annotations or {}).get(CLAIMS_ANNOTATION)
            if claims:
                return str(json.loads(claims)["mrenclave"])
        raise DemoError("no attested replica carries its attested claims")

    def _event(self, involved: str, reason: str) -> dict[str, Any] | None:
        events = self.kube.core.list_namespaced_event(
            NAMESPACE, field_selector=f"involvedObject.name={involved},reason={reason}"
        ).items
        if not events:
            return None
        return {"reason": events[0].reason, "message": events[0].message or ""}

    def _set_usage(self, value: str) -> None:
        # Pod by pod: while the HPA scales, a replica may go between the list and its patch
        # (kubectl annotate --selector then fails the whole call); a gone replica needs none.
        patch = {"metadata": {"annotations": {USAGE_ANNOTATION: value}}}
        for pod in self.kube.pods(NAMESPACE, f"{EC_LABEL}={EC_NAME}"):
            assert pod.metadata is not None  # noqa: S101 - pods() keeps only pods with one
            try:
                self.kube.core.patch_namespaced_pod(str(pod.metadata.name), NAMESPACE, patch)
            except ApiException as error:
                if error.status != 404:
                    raise

    def _scaled(self, reached: Callable[[int], bool], usage: str) -> int | None:
        """The replica count once ``reached``; until then every replica, including those
        the HPA just added, keeps reporting ``usage``."""
        replicas = int(self.kube.enclave_container(NAMESPACE, EC_NAME)["spec"]["replicas"])
        if reached(replicas):
            return replicas
        self._set_usage(usage)
        return None

    def _hpa_line(self) -> str:
        return self.kube.kubectl(
            "get", "hpa", EC_NAME, f"--namespace={NAMESPACE}", "--no-headers"
        ).strip()


def _mib(quantity: Any) -> int:
    """MiB of a status quantity such as ``64Mi`` or a plain number of MiB."""
    text = str(quantity or "0")
    for suffix, factor in (("Gi", 1024), ("Mi", 1), ("Ki", 1 / 1024)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(float(text))
