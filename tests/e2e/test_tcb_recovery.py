"""TCB recovery on the real local cluster (3 KWOK nodes, the simulated PCS, the attestation
service, the operator): a newer TCB evaluation makes one node OutOfDate; its labels and
the pool's status say so; the replicas there move to the other nodes within the
PodDisruptionBudget; a policy that accepts OutOfDate keeps its replica in place; a
replica that cannot move loses its secrets at its deadline; a microcode update brings
the node back to UpToDate and it takes replicas again.

The module starts its own attestation service (one replica, collateral renewed every
2 s) and operator (TCB sweep every second), and changes the cluster PCS's TCB levels of
the FMSPC 00606A000000 (nodes 2, 4, ...): the node it updates ends UpToDate again.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetee.attestation_service.tls import generate
from kubetee.cluster import pcs
from kubetee.cluster.layout import ClusterLayout
from kubetee.tcb.names import (
    DEADLINE_ANNOTATION,
    FMSPC_LABEL,
    PENDING_CONDITION,
    STATE_ANNOTATION,
    TCB_EVALUATION_LABEL,
    TCB_STATUS_LABEL,
)
from tests.e2e.attestation_support import (
    AttestationService,
    AttestingOperator,
    _wait_healthy,
    free_port,
    pod_dir,
)
from tests.e2e.conftest import REPO_ROOT, E2ECluster
from tests.e2e.operator_support import Api, api, condition, install_crds, wait_for
from tests.e2e.test_attestation import SECRET, _apply_ec, _attested, _create_secret, _spec
from tests.e2e.test_replacement import ServingWatch

pytestmark = pytest.mark.e2e
__all__ = ["api"]

FAMILY = "00606A000000"
ADVISORY = "INTEL-SA-09999"
MOVE_GRACE_SECONDS = 240
STUCK_GRACE_SECONDS = 25


@pytest.fixture(scope="module")
def tcb_service(
    cluster: E2ECluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AttestationService]:
    """One attestation service replica that renews its collateral every 2 seconds."""
    workdir = tmp_path_factory.mktemp("tcb-kbs")
    tls = generate(workdir / "tls", ["127.0.0.1", "localhost"])
    key = workdir / "session.key"
    key.write_text(secrets.token_urlsafe(48))
    namespace = f"kubetee-tcb-kbs-{os.getpid()}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": namespace}})
    layout = cluster.local_layout()
    port = free_port()
    log = workdir / "kbs.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "kubetee.cli", "attestation-service", "serve",
                "--host=127.0.0.1", f"--port={port}",
                f"--tls-cert={tls.certificate}", f"--tls-key={tls.key}",
                f"--session-key-file={key}", f"--namespace={namespace}",
                "--instance=kbs-tcb", "--nonce-ttl-seconds=10",
                f"--pccs-url={pcs.url(layout)}", f"--pccs-ca={pcs.tls_files(layout).ca}",
                f"--root-ca={pcs.root_ca(layout)}", f"--platform-registry={pcs.REGISTRY}",
                "--collateral-refresh-seconds=2", "--metrics-port=0",
                f"--kubeconfig={cluster.kubeconfig}",
            ],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )  # fmt: skip
    service = AttestationService(
        [f"https://127.0.0.1:{port}"], tls.ca, [log], namespace, "", [process]
    )
    try:
        _wait_healthy(service.urls[0], service.context(), process, service)
        yield service
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        core.delete_namespace(namespace)


class TcbOperator(AttestingOperator):
    """The operator with TCB recovery on: it judges nodes by the cluster PCS's TCB Info."""

    def __init__(
        self, kubeconfig: Path, log_path: Path, service: AttestationService, layout: ClusterLayout
    ) -> None:
        super().__init__(kubeconfig, log_path, service)
        self.layout = layout

    def start(self) -> None:
        layout = self.layout
        extra = {
            "KUBETEE_PCCS_URL": pcs.url(layout),
            "KUBETEE_PCCS_CA": str(pcs.tls_files(layout).ca),
            "KUBETEE_SGX_ROOT_CA": str(pcs.root_ca(layout)),
            "KUBETEE_PLATFORM_REGISTRY": pcs.REGISTRY,
            "KUBETEE_TCB_SWEEP_SECONDS": "1",
            "KUBETEE_TCB_REFRESH_SECONDS": "2",
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
def tcb_operator(
    cluster: E2ECluster, tcb_service: AttestationService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TcbOperator]:
    install_crds(cluster)
    process = TcbOperator(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("tcb-operator") / "operator.log",
        tcb_service,
        cluster.local_layout(),
    )
    process.start()
    try:
        yield process
    finally:
        process.kill(signal.SIGTERM)


def _nodes(api: Api) -> dict[str, dict[str, str]]:
    nodes = api.core.list_node(label_selector="kubetee.io/sgx=true").items
    return {n.metadata.name: dict(n.metadata.labels or {}) for n in nodes}


def _pool(api: Api, name: str, selector: dict[str, str]) -> None:
    api.apply(
        {
            "apiVersion": "kubetee.io/v1alpha1",
            "kind": "EPCPool",
            "metadata": {"name": name},
            "spec": {"nodeSelector": selector, "epcPerNode": "128Mi", "strategy": "Spread"},
        }
    )


def _live(api: Api, namespace: str, ec: str) -> list[client.V1Pod]:
    return [p for p in api.pods(namespace, ec) if p.metadata.deletion_timestamp is None]


def _reasons(api: Api, namespace: str) -> set[str]:
    return {e.reason for e in api.core.list_namespaced_event(namespace).items}


def _cluster_cli(cluster: E2ECluster, *args: str) -> subprocess.CompletedProcess[str]:
    layout = cluster.local_layout()
    return subprocess.run(
        [sys.executable, "-m", "kubetee.cli", *args],
        capture_output=True, text=True, check=False, timeout=120, cwd=REPO_ROOT,
        env={**os.environ, "KUBECONFIG": str(layout.kubeconfig)},
    )  # fmt: skip


def test_a_newer_tcb_evaluation_moves_replicas_and_a_microcode_update_brings_the_node_back(
    cluster: E2ECluster, api: Api, namespace: str, tcb_operator: TcbOperator
) -> None:
    layout = cluster.local_layout()
    nodes = wait_for(
        "every SGX node labelled with its platform and TCB status",
        lambda: (
            found
            if len(found := _nodes(api)) >= 3
            and all(labels.get(TCB_STATUS_LABEL) for labels in found.values())
            else None
        ),
        timeout=60,
        operator=tcb_operator,
    )
    target = sorted(name for name, labels in nodes.items() if labels[FMSPC_LABEL] == FAMILY)[0]
    evaluation = int(nodes[target][TCB_EVALUATION_LABEL])
    assert nodes[target][TCB_STATUS_LABEL] == "UpToDate"
    assert nodes[target]["kubetee.io/sgx-pck-ca"] == "platform"
    others = sorted(name for name in nodes if name != target)

    all_pool, target_pool = f"tcb-all-{namespace[-6:]}", f"tcb-one-{namespace[-6:]}"
    _pool(api, all_pool, {"kubetee.io/sgx": "true"})
    _pool(api, target_pool, {"kubernetes.io/hostname": target})
    try:
        _create_secret(api, namespace)
        strict = {"acceptedTcbStatuses": ["UpToDate"]}
        moved = {
            **_spec({**strict, "tcbRecoveryGraceSeconds": MOVE_GRACE_SECONDS}, replicas=6),
            "poolRef": {"name": all_pool},
            "disruption": {"maxUnavailable": 1},
        }
        tolerant = {
            **_spec({"acceptedTcbStatuses": ["UpToDate", "OutOfDate"]}, replicas=1),
            "poolRef": {"name": target_pool},
        }
        # A PodDisruptionBudget allowing no eviction: this replica cannot be moved.
        stuck = {
            **_spec({**strict, "tcbRecoveryGraceSeconds": STUCK_GRACE_SECONDS}, replicas=1),
            "poolRef": {"name": target_pool},
            "disruption": {"maxUnavailable": 0},
        }
        _apply_ec(api, namespace, "pay", moved)
        _apply_ec(api, namespace, "tolerant", tolerant)
        _apply_ec(api, namespace, "stuck", stuck)

        def attested(ec: str, count: int) -> list[client.V1Pod] | None:
            pods = [p for p in _live(api, namespace, ec) if _attested(p)]
            return pods if len(pods) >= count else None

        pay = wait_for("6 attested replicas", lambda: attested("pay", 6), 240, tcb_operator)
        on_target = [p.metadata.name for p in pay if p.spec.node_name == target]
        assert on_target, f"Spread placed no replica on {target}: {[p.spec.node_name for p in pay]}"
        (kept,) = wait_for("the tolerant replica", lambda: attested("tolerant", 1), 120)
        (held,) = wait_for("the replica that cannot move", lambda: attested("stuck", 1), 120)
        held_secret = pod_dir(cluster, held) / "root" / "run" / "kubetee" / "secrets" / "db" / "pw"
        wait_for("its secret delivered", held_secret.exists, timeout=30)
        assert held_secret.read_bytes() == SECRET

        with ServingWatch(api, namespace, "pay") as watch:
            published = _cluster_cli(
                cluster, "pcs", "publish-tcb", f"--authority-dir={pcs.pcs_dir(layout)}",
                f"--fmspc={FAMILY}", f"--advisory={ADVISORY}",
            )  # fmt: skip
            assert published.returncode == 0, published.stderr
            assert json.loads(published.stdout)["tcbEvaluationDataNumber"] == evaluation + 1

            # The node's labels and the pool's status say why.
            labels = wait_for(
                f"{target} labelled OutOfDate",
                lambda: (
                    found
                    if (found := _nodes(api)[target]).get(TCB_STATUS_LABEL) == "OutOfDate"
                    else None
                ),
                timeout=60,
                operator=tcb_operator,
            )
            assert labels[TCB_EVALUATION_LABEL] == str(evaluation + 1)
            node = api.core.read_node(target)
            assert ADVISORY in node.metadata.annotations["kubetee.io/sgx-tcb-advisories"]
            assert all(_nodes(api)[name][TCB_STATUS_LABEL] == "UpToDate" for name in others)
            pool = wait_for(
                "the pool counting nodes by TCB status",
                lambda: (
                    p if (p := api.pool(all_pool)).get("status", {}).get("tcbStatuses")
                    == {"OutOfDate": 1, "UpToDate": 2} else None
                ),
                timeout=60,
            )  # fmt: skip
            by_node = {n["name"]: n.get("tcbStatus") for n in pool["status"]["nodes"]}
            assert by_node[target] == "OutOfDate"

            # Within the grace period the replicas move to the other nodes.
            wait_for(
                "the EnclaveContainer's TcbRecoveryPending condition",
                lambda: (
                    condition(api.ec(namespace, "pay"), PENDING_CONDITION).get("status") == "True"
                ),
                timeout=60,
                operator=tcb_operator,
            )

            def moved_off() -> list[client.V1Pod] | None:
                pods = attested("pay", 6)
                if pods is None or len(_live(api, namespace, "pay")) != 6:
                    return None
                return pods if all(p.spec.node_name != target for p in pods) else None

            after = wait_for("6 attested replicas off " + target, moved_off, 240, tcb_operator)
            assert {p.spec.node_name for p in after} <= set(others)
        assert watch.fewest is not None
        assert watch.fewest >= 5, f"only {watch.fewest} of 6 replicas served during the move"
        assert {"TcbRecoveryPending", "TcbRecoveryMoved", "TcbStatusChanged"} <= (
            _reasons(api, namespace) | _reasons(api, "default")
        )
        wait_for(
            "TcbRecoveryPending False again",
            lambda: condition(api.ec(namespace, "pay"), PENDING_CONDITION).get("status") == "False",
            timeout=60,
        )

        # A policy that accepts OutOfDate keeps its replica in place, attested.
        still = api.core.read_namespaced_pod(kept.metadata.name, namespace)
        assert still.metadata.deletion_timestamp is None
        assert _attested(still)
        assert DEADLINE_ANNOTATION not in (still.metadata.annotations or {})

        # The replica that cannot move loses its secrets at its deadline.
        def held_pod() -> client.V1Pod:
            return api.core.read_namespaced_pod(held.metadata.name, namespace)

        def with_deadline() -> client.V1Pod | None:
            pod = held_pod()
            return pod if DEADLINE_ANNOTATION in (pod.metadata.annotations or {}) else None

        pending = wait_for("the stuck replica's deadline", with_deadline, timeout=60)
        assert any(c.type == PENDING_CONDITION for c in pending.status.conditions or [])
        withdrawn = wait_for(
            "the stuck replica's attestation withdrawn",
            lambda: p if (p := held_pod()).metadata.annotations.get(STATE_ANNOTATION) else None,
            timeout=STUCK_GRACE_SECONDS + 60,
            operator=tcb_operator,
        )  # fmt: skip
        assert not _attested(withdrawn)
        wait_for("the runtime removed the secret", lambda: not held_secret.exists(), timeout=60)
        # The Event follows the pod's patches, so it may land a moment after them.
        wait_for(
            "a TcbRecoveryDeadlinePassed Event",
            lambda: "TcbRecoveryDeadlinePassed" in _reasons(api, namespace),
            timeout=30,
        )

        # A microcode update brings the node back to UpToDate ...
        updated = _cluster_cli(
            cluster, "cluster", f"--name={layout.name}", f"--workdir={layout.workdir}",
            "update-platform", f"--node={target}",
        )  # fmt: skip
        assert updated.returncode == 0, updated.stderr
        wait_for(
            f"{target} labelled UpToDate again",
            lambda: _nodes(api)[target].get(TCB_STATUS_LABEL) == "UpToDate",
            timeout=60,
            operator=tcb_operator,
        )
        # ... the replica on it kept running ...
        same = api.core.read_namespaced_pod(kept.metadata.name, namespace)
        assert same.metadata.uid == kept.metadata.uid
        assert _attested(same)

        # ... the replica that lost its secrets attests again there (its runtime retries) ...
        def recovered() -> client.V1Pod | None:
            pod = held_pod()
            marks = {DEADLINE_ANNOTATION, STATE_ANNOTATION} & set(pod.metadata.annotations or {})
            return pod if _attested(pod) and not marks else None

        wait_for("the withdrawn replica attested again", recovered, 180, tcb_operator)
        wait_for("its secret delivered again", held_secret.exists, timeout=60)
        wait_for(
            "a TcbRecovered Event",
            lambda: "TcbRecovered" in _reasons(api, namespace),
            timeout=30,
            operator=tcb_operator,
        )
        # ... and it takes replicas again.
        _apply_ec(api, namespace, "pay", {**moved, "replicas": 9})
        wait_for(
            f"a new replica attested on {target}",
            lambda: any(p.spec.node_name == target for p in attested("pay", 9) or []),
            timeout=240,
            operator=tcb_operator,
        )
    finally:
        for name in ("pay", "tolerant", "stuck"):
            try:
                api.custom.delete_namespaced_custom_object(
                    "kubetee.io", "v1alpha1", namespace, "enclavecontainers", name
                )
            except ApiException as error:
                if error.status != 404:
                    raise
        for pool_name in (all_pool, target_pool):
            api.delete_pool(pool_name)
